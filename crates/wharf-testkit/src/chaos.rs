//! The randomized fault run's pure parts (`tests/fleet_chaos.rs` drives the fleet): the
//! settings read from the environment, the seeded plan (the releases and what the
//! operator does with them, the faults and when they land) and the invariant checker,
//! which judges the end state from what the API and the hosts report.
//!
//! The plan is a function of the seed alone, so a printed seed reruns the same
//! releases and the same faults in the same order with the same durations. The
//! fleet's timing is real, though: which step a fault lands in may differ between two
//! runs of one seed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use anyhow::Context as _;
use rand::rngs::StdRng;
use rand::seq::SliceRandom as _;
use rand::{Rng as _, SeedableRng as _};
use serde_json::Value;

/// The environment variable holding the seed to run with.
pub const SEED_VAR: &str = "WHARF_CHAOS_SEED";
/// The environment variable selecting the long form (`1`).
pub const LONG_VAR: &str = "WHARF_CHAOS_LONG";

/// How big a run is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChaosSettings {
    pub seed: u64,
    pub long: bool,
    /// Hosts in the fleet.
    pub hosts: usize,
    /// Releases the operator starts at least; more while faults are still planned.
    pub min_rounds: usize,
    /// Releases the operator starts at most.
    pub max_rounds: usize,
    /// Faults injected.
    pub faults: usize,
    /// The server's heartbeat interval.
    pub heartbeat: Duration,
    /// The server's offline threshold.
    pub offline_after: Duration,
}

impl ChaosSettings {
    /// The short form (CI) or, with `long`, the long form, for `seed`.
    pub fn new(seed: u64, long: bool) -> Self {
        let (min_rounds, max_rounds, faults) = if long { (40, 120, 60) } else { (6, 14, 8) };
        Self {
            seed,
            long,
            hosts: 4,
            min_rounds,
            max_rounds,
            faults,
            heartbeat: Duration::from_secs(2),
            offline_after: Duration::from_secs(10),
        }
    }

    /// The settings of [`SEED_VAR`] (a seed drawn at random when unset) and
    /// [`LONG_VAR`]; a seed that is not a number is an error naming the variable.
    pub fn from_env() -> anyhow::Result<Self> {
        let seed = match std::env::var(SEED_VAR) {
            Ok(text) if !text.trim().is_empty() => text
                .trim()
                .parse()
                .with_context(|| format!("{SEED_VAR}={text:?} is not an unsigned number"))?,
            _ => rand::random(),
        };
        let long = std::env::var(LONG_VAR).is_ok_and(|value| value == "1");
        Ok(Self::new(seed, long))
    }
}

/// `--pause` of a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    Auto,
    First,
    Each,
}

impl Pause {
    pub fn as_arg(self) -> &'static str {
        match self {
            Pause::Auto => "auto",
            Pause::First => "first",
            Pause::Each => "each",
        }
    }
}

/// What the operator does when the release pauses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnPause {
    /// `wharf release continue` after this long.
    Continue(Duration),
    /// `wharf release cancel` after this long.
    Cancel(Duration),
}

/// One release the operator starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Round {
    /// `wharf release create` of `deployment`.
    Release(ReleasePlan),
    /// `wharf release rollback` (the group's previous deployment).
    Rollback,
}

/// The options of a `wharf release create` and the operator's actions on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleasePlan {
    /// `v1` or `v2`.
    pub deployment: &'static str,
    pub batches: u32,
    pub pause: Pause,
    /// `--max-failures`; `None` leaves the server's default.
    pub max_failures: Option<u32>,
    pub rollback_on_failure: bool,
    /// `wharf release cancel` this long after the start, if it still runs.
    pub cancel_after: Option<Duration>,
    /// The operator's answer to each pause, in order (the last one repeats).
    pub on_pause: Vec<OnPause>,
}

impl Round {
    /// Round `index` of the run with `seed`: a function of both alone, so the rounds
    /// past the planned minimum are reproducible too.
    pub fn plan(seed: u64, index: usize) -> Round {
        // The golden-ratio step spreads neighbouring indices over the seed space.
        let mixed = seed.wrapping_add((index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut rng = StdRng::seed_from_u64(mixed);
        if index > 0 && rng.gen_bool(0.15) {
            return Round::Rollback;
        }
        // Mostly the other version than the round before, so releases change the image.
        let deployment = if index.is_multiple_of(2) { "v2" } else { "v1" };
        let deployment = if rng.gen_bool(0.2) {
            if deployment == "v1" {
                "v2"
            } else {
                "v1"
            }
        } else {
            deployment
        };
        let batches = rng.gen_range(1..=4);
        let pause = if batches == 1 {
            Pause::Auto
        } else {
            *[Pause::Auto, Pause::First, Pause::Each]
                .choose(&mut rng)
                .unwrap_or(&Pause::Auto)
        };
        let max_failures = match rng.gen_range(0..4) {
            0 => None,
            1 => Some(1),
            _ => Some(0),
        };
        let rollback_on_failure = rng.gen_bool(0.4);
        let cancel_after = rng
            .gen_bool(0.15)
            .then(|| Duration::from_millis(rng.gen_range(1_000..8_000)));
        let on_pause = (0..3)
            .map(|_| {
                let after = Duration::from_millis(rng.gen_range(500..5_000));
                if rng.gen_bool(0.2) {
                    OnPause::Cancel(after)
                } else {
                    OnPause::Continue(after)
                }
            })
            .collect();
        Round::Release(ReleasePlan {
            deployment,
            batches,
            pause,
            max_failures,
            rollback_on_failure,
            cancel_after,
            on_pause,
        })
    }
}

/// A fault the injector causes, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// `SIGKILL` to the server; started again on the same data after `down`.
    KillServer { down: Duration },
    /// `SIGKILL` to an agent (one running a step if there is one, else host
    /// `host` (0-based)); started again after `down`.
    KillAgent { host: usize, down: Duration },
    /// The host (a busy one if there is one, else `host`) off the network for `off`
    /// (longer than the offline threshold), then reconnected.
    Disconnect { host: usize, off: Duration },
    /// The store's write lock held by another process for `stall`.
    StallStore { stall: Duration },
}

impl FaultKind {
    /// The kind's name in the figures.
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::KillServer { .. } => "server killed",
            FaultKind::KillAgent { .. } => "agent killed",
            FaultKind::Disconnect { .. } => "host disconnected",
            FaultKind::StallStore { .. } => "store stalled",
        }
    }
}

/// A fault and the quiet time before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// How long the injector waits, after the fault before has been undone.
    pub gap: Duration,
    pub kind: FaultKind,
}

/// The run's faults: each kind once first (in a seeded order), then kinds at random.
pub fn plan_faults(settings: &ChaosSettings) -> Vec<Fault> {
    let mut rng = StdRng::seed_from_u64(settings.seed);
    let offline = settings.offline_after.as_millis() as u64;
    let mut kinds: Vec<usize> = (0..4).collect();
    kinds.shuffle(&mut rng);
    (0..settings.faults)
        .map(|index| {
            let kind = kinds
                .get(index)
                .copied()
                .unwrap_or_else(|| rng.gen_range(0..4));
            let gap = Duration::from_millis(rng.gen_range(3_000..15_000));
            let host = rng.gen_range(0..settings.hosts.max(1));
            let kind = match kind {
                0 => FaultKind::KillServer {
                    down: Duration::from_millis(rng.gen_range(1_000..2 * offline)),
                },
                1 => FaultKind::KillAgent {
                    host,
                    down: Duration::from_millis(rng.gen_range(0..3_000)),
                },
                2 => FaultKind::Disconnect {
                    host,
                    off: Duration::from_millis(offline + rng.gen_range(2_000..8_000)),
                },
                _ => FaultKind::StallStore {
                    stall: Duration::from_millis(rng.gen_range(2_000..2 * offline)),
                },
            };
            Fault { gap, kind }
        })
        .collect()
}

/// What a host holds at the end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostRecord {
    /// `host-N`.
    pub name: String,
    /// The release ids the start script recorded, in order.
    pub starts: Vec<String>,
    /// The release ids the stop script recorded, in order.
    pub stops: Vec<String>,
    /// The image reference `my-container` was run from, if it runs.
    pub container_image: Option<String>,
    /// The repository digests (`sha256:…`) of the image the container runs.
    pub image_digests: Vec<String>,
    /// What the app answered on `/hello`, if it answered.
    pub answer: Option<String>,
}

/// A deployment's image reference and the app's answer for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub image: String,
    pub answer: String,
}

/// Everything the checker looks at.
pub struct World<'a> {
    /// The group's releases as `GET /releases/{id}` shows them, oldest first.
    pub releases: &'a [Value],
    /// `GET /apps/{app}/groups/{group}`.
    pub group: &'a Value,
    pub hosts: &'a [HostRecord],
    /// By deployment name.
    pub expected: &'a BTreeMap<String, Expected>,
    /// `GET /scaling-groups/{name}` of the scaling group bound to the group, if any.
    pub scaling_group: Option<&'a Value>,
}

/// The checker's findings.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Invariant checks made.
    pub checked: usize,
    /// Checks that failed, each saying what and where.
    pub violations: Vec<String>,
    /// Hosts whose last container change was by a task that did not succeed: what they
    /// run is not determined by the records, so invariant 3 skips them.
    pub undetermined: Vec<String>,
}

impl Verdict {
    fn check(&mut self, ok: bool, violation: impl FnOnce() -> String) {
        self.checked += 1;
        if !ok {
            self.violations.push(violation());
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} invariant checks, {} violated",
            self.checked,
            self.violations.len()
        )?;
        for violation in &self.violations {
            write!(f, "\n  VIOLATED: {violation}")?;
        }
        for note in &self.undetermined {
            write!(f, "\n  not determined: {note}")?;
        }
        Ok(())
    }
}

const TERMINAL: [&str; 3] = ["succeeded", "failed", "cancelled"];

/// A release's task on `host`, if the host was a target.
fn task<'v>(release: &'v Value, host: &str) -> Option<&'v Value> {
    release["batches"]
        .as_array()?
        .iter()
        .flat_map(|batch| batch["instances"].as_array().into_iter().flatten())
        .find(|instance| instance["name"] == host)
}

fn has_step(task: &Value, names: &[&str]) -> bool {
    task["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|step| names.iter().any(|name| step["name"] == *name))
}

fn duplicates(ids: &[String]) -> Vec<&str> {
    let mut seen = BTreeSet::new();
    let mut twice = BTreeSet::new();
    for id in ids {
        if !seen.insert(id.as_str()) {
            twice.insert(id.as_str());
        }
    }
    twice.into_iter().collect()
}

/// Checks the invariants of the run on `world`. With `converged` (after a last
/// release without faults), every member must also run the group's current
/// deployment and no host may be undetermined.
pub fn check(world: &World<'_>, converged: bool) -> Verdict {
    let mut verdict = Verdict::default();
    let str_of = |value: &Value| value.as_str().unwrap_or_default().to_owned();

    // 1. Every release ended, and every task of it: none is left running or pending.
    for release in world.releases {
        let id = str_of(&release["id"]);
        let state = str_of(&release["state"]);
        verdict.check(TERMINAL.contains(&state.as_str()), || {
            format!("1: release {id} did not end: {state}")
        });
        let open: Vec<String> = release["batches"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|batch| batch["instances"].as_array().into_iter().flatten())
            .filter(|task| !TERMINAL.contains(&task["state"].as_str().unwrap_or_default()))
            .map(|task| format!("{} {}", str_of(&task["name"]), str_of(&task["state"])))
            .collect();
        verdict.check(open.is_empty(), || {
            format!("1: release {id} ({state}) has tasks that did not end: {open:?}")
        });
    }

    // 2. No script ran twice on a host for one release; every task that succeeded
    // ran its start script on its host.
    for host in world.hosts {
        for (file, ids) in [("starts", &host.starts), ("stops", &host.stops)] {
            let twice = duplicates(ids);
            verdict.check(twice.is_empty(), || {
                format!(
                    "2: {}: the {file} record has {twice:?} more than once",
                    host.name
                )
            });
        }
        for release in world.releases {
            let Some(task) = task(release, &host.name) else {
                continue;
            };
            if task["state"] == "succeeded" {
                let id = str_of(&release["id"]);
                verdict.check(host.starts.contains(&id), || {
                    format!(
                        "2: {}: its task of {id} succeeded but its start script never ran",
                        host.name
                    )
                });
            }
        }
    }

    // 3. A host whose last container change came from a task that succeeded runs that
    // release's image, and its membership records that deployment and digest.
    let members: BTreeMap<String, &Value> = world.group["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|member| (str_of(&member["name"]), member))
        .collect();
    for host in world.hosts {
        // What changed the container last: a release whose stop or start script ran
        // on the host (by the host's own records, which also see scripts that ran
        // after the server gave up on the task) or began (by the server's records).
        let last = world.releases.iter().rev().find_map(|release| {
            let id = str_of(&release["id"]);
            let task = task(release, &host.name)?;
            let touched = host.starts.contains(&id)
                || host.stops.contains(&id)
                || has_step(task, &["stop", "start"]);
            touched.then_some((release, task))
        });
        let Some((release, task)) = last else {
            continue;
        };
        let id = str_of(&release["id"]);
        if task["state"] != "succeeded" {
            verdict.undetermined.push(format!(
                "{}: last changed by {id}, whose task ended {}",
                host.name,
                str_of(&task["state"])
            ));
            continue;
        }
        let deployment = str_of(&release["deployment"]);
        let member = members.get(&host.name);
        let recorded = member.map(|m| str_of(&m["deployment"]));
        verdict.check(recorded.as_deref() == Some(deployment.as_str()), || {
            format!(
                "3: {}: succeeded in {id} ({deployment}) but its membership records {recorded:?}",
                host.name
            )
        });
        let digest = member.and_then(|m| m["image_digest"].as_str());
        verdict.check(
            digest.is_some_and(|digest| host.image_digests.iter().any(|d| d == digest)),
            || {
                format!(
                    "3: {}: membership digest {digest:?} is not the running image's {:?}",
                    host.name, host.image_digests
                )
            },
        );
        match world.expected.get(&deployment) {
            Some(expected) => {
                verdict.check(
                    host.container_image.as_deref() == Some(expected.image.as_str()),
                    || {
                        format!(
                            "3: {}: succeeded in {id} ({deployment}, {}) but runs {:?}",
                            host.name, expected.image, host.container_image
                        )
                    },
                );
                verdict.check(
                    host.answer.as_deref() == Some(expected.answer.as_str()),
                    || {
                        format!(
                            "3: {}: succeeded in {id} ({deployment}) but answers {:?}",
                            host.name, host.answer
                        )
                    },
                );
            }
            None => verdict.check(false, || {
                format!("3: {id} published an unknown deployment {deployment:?}")
            }),
        }
    }

    // 4. The group's current deployment is its last succeeded release's, each member's
    // drift flag says whether it runs another, and after convergence none does.
    let current = world.group["current_deployment"].as_str();
    let last_succeeded = world
        .releases
        .iter()
        .rev()
        .find(|release| release["state"] == "succeeded")
        .and_then(|release| release["deployment"].as_str());
    verdict.check(current == last_succeeded, || {
        format!(
            "4: the group's current deployment is {current:?}, its last succeeded release's {last_succeeded:?}"
        )
    });
    for (name, member) in &members {
        let deployment = member["deployment"].as_str();
        let drift = member["drift"].as_bool().unwrap_or(false);
        verdict.check(drift == (deployment != current), || {
            format!("4: {name}: runs {deployment:?}, current {current:?}, drift {drift}")
        });
        if converged {
            verdict.check(deployment == current && current.is_some(), || {
                format!("4: {name}: runs {deployment:?} after convergence, current {current:?}")
            });
        }
    }
    if converged {
        let undetermined = std::mem::take(&mut verdict.undetermined);
        verdict.check(undetermined.is_empty(), || {
            format!("3: hosts not determined after convergence: {undetermined:?}")
        });
    }

    // 5. No scaling group is left suspended.
    if let Some(sg) = world.scaling_group {
        let settled = sg["state"] == "active"
            && sg["suspended_by"].is_null()
            && sg["resume_hook_pending"] == false
            && sg["pending"].as_array().is_some_and(Vec::is_empty);
        verdict.check(settled, || {
            format!(
                "5: scaling group {} is left {} (suspended_by {}, resume pending {}, pending {})",
                str_of(&sg["name"]),
                str_of(&sg["status"]),
                sg["suspended_by"],
                sg["resume_hook_pending"],
                sg["pending"]
            )
        });
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_plan_is_a_function_of_the_seed() {
        let a = ChaosSettings::new(42, false);
        assert_eq!(plan_faults(&a), plan_faults(&a));
        assert_ne!(plan_faults(&a), plan_faults(&ChaosSettings::new(43, false)));
        let rounds = |seed| (0..10).map(|i| Round::plan(seed, i)).collect::<Vec<_>>();
        assert_eq!(rounds(42), rounds(42));
        assert_ne!(rounds(42), rounds(7));
        assert!(matches!(Round::plan(42, 0), Round::Release(_)));
        // Manual rollbacks are the exception, evenly spread.
        let rollbacks = (1..1001)
            .filter(|i| Round::plan(1, *i) == Round::Rollback)
            .count();
        assert!((80..250).contains(&rollbacks), "{rollbacks} of 1000");
        let runs = (1..1000)
            .filter(|i| {
                Round::plan(1, *i) == Round::Rollback && Round::plan(1, i + 1) == Round::Rollback
            })
            .count();
        assert!(runs < 60, "{runs} rollbacks follow a rollback");
    }

    #[test]
    fn every_fault_kind_comes_first_and_lasts_as_planned() {
        for seed in 0..50 {
            let settings = ChaosSettings::new(seed, false);
            let faults = plan_faults(&settings);
            assert_eq!(faults.len(), settings.faults);
            let first: BTreeSet<&str> = faults[..4].iter().map(|f| f.kind.name()).collect();
            assert_eq!(first.len(), 4, "seed {seed}: {faults:?}");
            for fault in &faults {
                match fault.kind {
                    FaultKind::Disconnect { off, host } => {
                        assert!(off > settings.offline_after);
                        assert!(host < settings.hosts);
                    }
                    FaultKind::KillAgent { host, .. } => assert!(host < settings.hosts),
                    FaultKind::KillServer { down } => assert!(down < 2 * settings.offline_after),
                    FaultKind::StallStore { stall } => assert!(stall >= Duration::from_secs(2)),
                }
            }
        }
        assert_eq!(ChaosSettings::new(1, true).faults, 60);
    }

    fn release(id: &str, deployment: &str, state: &str, tasks: &[(&str, &str, &[&str])]) -> Value {
        let instances: Vec<Value> = tasks
            .iter()
            .map(|(name, state, steps)| {
                let steps: Vec<Value> = steps.iter().map(|s| json!({"name": s})).collect();
                json!({"name": name, "state": state, "steps": steps})
            })
            .collect();
        json!({"id": id, "deployment": deployment, "state": state,
               "batches": [{"instances": instances}]})
    }

    const ALL: &[&str] = &["fetch", "prepare", "pull", "stop", "start"];

    fn host(name: &str, starts: &[&str], version: &str) -> HostRecord {
        HostRecord {
            name: name.to_owned(),
            starts: starts.iter().map(|s| s.to_string()).collect(),
            stops: starts.iter().map(|s| s.to_string()).collect(),
            container_image: Some(format!("reg/hello:{version}")),
            image_digests: vec![format!("sha256:{version}")],
            answer: Some(format!("hello from {version}\n")),
        }
    }

    fn expected() -> BTreeMap<String, Expected> {
        ["v1", "v2"]
            .iter()
            .map(|v| {
                (
                    v.to_string(),
                    Expected {
                        image: format!("reg/hello:{v}"),
                        answer: format!("hello from {v}\n"),
                    },
                )
            })
            .collect()
    }

    fn group(current: &str, members: &[(&str, &str)]) -> Value {
        let instances: Vec<Value> = members
            .iter()
            .map(|(name, deployment)| {
                json!({"name": name, "deployment": deployment,
                       "image_digest": format!("sha256:{deployment}"),
                       "drift": *deployment != current})
            })
            .collect();
        json!({"current_deployment": current, "instances": instances})
    }

    #[test]
    fn a_consistent_world_passes_and_each_break_is_named() {
        let releases = vec![
            release(
                "r-1",
                "v1",
                "succeeded",
                &[("h1", "succeeded", ALL), ("h2", "succeeded", ALL)],
            ),
            // h2 was cut off and failed, yet its script ran: undetermined, not wrong.
            release(
                "r-2",
                "v2",
                "succeeded",
                &[("h1", "succeeded", ALL), ("h2", "failed", &["fetch"])],
            ),
        ];
        let hosts = vec![
            host("h1", &["r-1", "r-2"], "v2"),
            host("h2", &["r-1", "r-2"], "v2"),
        ];
        let group = group("v2", &[("h1", "v2"), ("h2", "v1")]);
        let sg = json!({"name": "asg", "state": "active", "status": "active",
                        "suspended_by": null, "resume_hook_pending": false, "pending": []});
        let expected = expected();
        let world = World {
            releases: &releases,
            group: &group,
            hosts: &hosts,
            expected: &expected,
            scaling_group: Some(&sg),
        };
        let verdict = check(&world, false);
        assert!(verdict.violations.is_empty(), "{verdict}");
        assert_eq!(verdict.undetermined.len(), 1, "{verdict}");
        assert!(verdict.checked >= 15, "{verdict}");
        // Not converged: h2 runs another deployment than the group's.
        let strict = check(&world, true);
        assert_eq!(strict.violations.len(), 2, "{strict}");

        // A start script run twice.
        let mut twice = hosts.clone();
        twice[0].starts.push("r-2".into());
        let verdict = check(
            &World {
                hosts: &twice,
                ..world_ref(&world)
            },
            false,
        );
        assert!(
            verdict.violations[0].starts_with("2: h1: the starts record"),
            "{verdict}"
        );

        // A host that succeeded but runs the old image.
        let mut stale = hosts.clone();
        stale[0] = HostRecord {
            starts: vec!["r-1".into(), "r-2".into()],
            ..host("h1", &["r-1"], "v1")
        };
        let verdict = check(
            &World {
                hosts: &stale,
                ..world_ref(&world)
            },
            false,
        );
        assert_eq!(verdict.violations.len(), 3, "{verdict}");

        // A membership that records no digest.
        let mut no_digest = group.clone();
        no_digest["instances"][0]["image_digest"] = Value::Null;
        let verdict = check(
            &World {
                group: &no_digest,
                ..world_ref(&world)
            },
            false,
        );
        assert_eq!(verdict.violations.len(), 1, "{verdict}");
        assert!(
            verdict.violations[0].contains("h1: membership digest None"),
            "{verdict}"
        );

        // A release still running with a task not ended, a wrong current deployment, a
        // suspended scaling group.
        let mut running = releases.clone();
        running[1]["state"] = json!("running");
        running[1]["batches"][0]["instances"][1]["state"] = json!("running");
        let suspended = json!({"name": "asg", "state": "suspended", "status": "suspended by r-2",
                               "suspended_by": "r-2", "resume_hook_pending": false, "pending": []});
        let verdict = check(
            &World {
                releases: &running,
                scaling_group: Some(&suspended),
                ..world_ref(&world)
            },
            false,
        );
        let numbers: Vec<&str> = verdict.violations.iter().map(|v| &v[..2]).collect();
        assert_eq!(numbers, ["1:", "1:", "4:", "5:"], "{verdict}");
    }

    fn world_ref<'a>(world: &World<'a>) -> World<'a> {
        World {
            releases: world.releases,
            group: world.group,
            hosts: world.hosts,
            expected: world.expected,
            scaling_group: world.scaling_group,
        }
    }
}
