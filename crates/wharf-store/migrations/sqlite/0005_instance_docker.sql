-- What an instance's agent last reported about the host's Docker Engine with its
-- heartbeat: the engine's version when it answered, else why it did not. Both
-- NULL until an agent that reports it has sent a heartbeat. The conventions of
-- 0001_core_resources.sql hold here too.

ALTER TABLE instances ADD COLUMN docker_version TEXT;
ALTER TABLE instances ADD COLUMN docker_error TEXT;
