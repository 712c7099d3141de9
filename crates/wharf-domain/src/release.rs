//! Release planning and the names of release, instance and step states
//! (product.md sections 3 and 4). The release driver in the server decides what to
//! do next from these rules; keeping them here makes them testable without a store.

use crate::ValidationError;

/// The most batches a release may have.
pub const MAX_BATCHES: u32 = 100;

/// Splits `instances` instances into at most `batches` batches whose sizes differ by
/// at most one, larger batches first. Returns the size of each batch; no batch is
/// empty, so fewer instances than batches gives one batch per instance.
pub fn plan_batches(instances: usize, batches: u32) -> Vec<usize> {
    let count = (batches as usize).min(instances).max(1);
    if instances == 0 {
        return Vec::new();
    }
    let base = instances / count;
    let larger = instances % count;
    (0..count)
        .map(|i| if i < larger { base + 1 } else { base })
        .collect()
}

/// Checks the requested batch count.
pub fn validate_batches(batches: u32) -> Result<(), ValidationError> {
    if batches == 0 || batches > MAX_BATCHES {
        return Err(ValidationError::new(
            "batches",
            format!("must be from 1 to {MAX_BATCHES}"),
        ));
    }
    Ok(())
}

/// When a release waits for `continue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseMode {
    /// Never pause; wait `batch_interval` between batches.
    Auto,
    /// Pause after the first batch.
    First,
    /// Pause after every batch but the last.
    Each,
}

impl PauseMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::First => "first",
            Self::Each => "each",
        }
    }

    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        match value {
            "auto" => Ok(Self::Auto),
            "first" => Ok(Self::First),
            "each" => Ok(Self::Each),
            other => Err(ValidationError::new(
                "pause",
                format!("{other:?} is not a pause mode (auto, first or each)"),
            )),
        }
    }

    /// Whether the release pauses after the batch at `index` (0-based) of `total`.
    pub fn pauses_after(self, index: usize, total: usize) -> bool {
        let last = index + 1 >= total;
        match self {
            Self::Auto => false,
            Self::First => index == 0 && !last,
            Self::Each => !last,
        }
    }
}

/// The life of a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReleaseState {
    Pending,
    Running,
    Paused,
    Succeeded,
    Failed,
    Cancelled,
}

impl ReleaseState {
    pub const ALL: [ReleaseState; 6] = [
        Self::Pending,
        Self::Running,
        Self::Paused,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// A finished release never changes again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    /// The transitions of product.md section 4:
    /// `pending → running ⇄ paused → succeeded | failed | cancelled`.
    pub fn can_become(self, next: ReleaseState) -> bool {
        use ReleaseState::*;
        matches!(
            (self, next),
            (Pending, Running)
                | (Pending, Failed)
                | (Pending, Cancelled)
                | (Running, Paused)
                | (Paused, Running)
                | (Running, Succeeded)
                | (Running, Failed)
                | (Running, Cancelled)
                | (Paused, Cancelled)
                | (Paused, Failed)
        )
    }
}

/// The steps run on each instance, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StepName {
    Fetch,
    Prepare,
    Pull,
    Stop,
    Start,
    Verify,
    /// The one step of a group exec: the operator's script, run with bash.
    Exec,
}

impl StepName {
    pub const ALL: [StepName; 7] = [
        Self::Fetch,
        Self::Prepare,
        Self::Pull,
        Self::Stop,
        Self::Start,
        Self::Verify,
        Self::Exec,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fetch => "fetch",
            Self::Prepare => "prepare",
            Self::Pull => "pull",
            Self::Stop => "stop",
            Self::Start => "start",
            Self::Verify => "verify",
            Self::Exec => "exec",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// The steps a deployment runs: no pull for `command`, no verify without a check.
    /// A deployment never runs `exec`, which belongs to group execs (see
    /// [`StepName::exec_plan`]).
    pub fn plan(pulls_image: bool, verifies: bool) -> Vec<StepName> {
        Self::ALL
            .into_iter()
            .filter(|s| match s {
                Self::Pull => pulls_image,
                Self::Verify => verifies,
                Self::Exec => false,
                _ => true,
            })
            .collect()
    }

    /// The steps of a group exec on one instance: `fetch`, then `exec`.
    pub fn exec_plan() -> Vec<StepName> {
        vec![Self::Fetch, Self::Exec]
    }
}

/// What a release row is: the four kinds share the release machinery (tasks,
/// batches, the driver, step reports) and differ where the kind is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReleaseKind {
    /// A deployment published on an operator's request.
    Release,
    /// The group's previous deployment, published by `release rollback` or
    /// automatically after a failed release.
    Rollback,
    /// Brings instances that joined a group through a scaling group up to the
    /// group's current deployment.
    CatchUp,
    /// A group exec: an operator's script on the instances, no deployment.
    Exec,
}

impl ReleaseKind {
    pub const ALL: [ReleaseKind; 4] = [Self::Release, Self::Rollback, Self::CatchUp, Self::Exec];

    /// The kind as stored and shown (`kind` of a release).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Release => "release",
            Self::Rollback => "rollback",
            Self::CatchUp => "catch-up",
            Self::Exec => "exec",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == value)
    }

    /// Whether it publishes a deployment (and so records it on the group and its
    /// instances when it succeeds); only an exec does not.
    pub fn publishes(self) -> bool {
        self != Self::Exec
    }

    /// Whether a failing instance counts against the release: an exec reports per
    /// host and never stops for one.
    pub fn stops_on_failures(self) -> bool {
        self != Self::Exec
    }

    /// Whether it takes its group's scaling lease before it starts: catch-ups run
    /// while the lease is being given back, and execs change no deployment.
    pub fn takes_scaling_lease(self) -> bool {
        matches!(self, Self::Release | Self::Rollback)
    }
}

/// How a task ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskEnd {
    Succeeded,
    Failed,
}

impl StepName {
    /// Whether an agent may say it begins this step: every step but fetch, which
    /// the server records itself when the agent takes the work.
    pub fn begun_by_agent(self) -> bool {
        self != Self::Fetch
    }

    /// Whether this step can be the last of a task's plan: every deployment plan
    /// ends with start or verify, an exec's with exec. Only these steps can end a
    /// task well, so the plan need not be looked at for the others.
    pub fn may_end_task(self) -> bool {
        matches!(self, Self::Start | Self::Verify | Self::Exec)
    }

    /// The step after `self` in `plan`, if any.
    pub fn next_in(self, plan: &[StepName]) -> Option<StepName> {
        let at = plan.iter().position(|s| *s == self)?;
        plan.get(at + 1).copied()
    }
}

/// Whether a step's end ends its task, and how: a failed step fails the task; the
/// last planned step (`last_planned`) succeeding ends it well; any other success
/// leaves the task running.
pub fn task_end(step: StepName, succeeded: bool, last_planned: StepName) -> Option<TaskEnd> {
    if !succeeded {
        return Some(TaskEnd::Failed);
    }
    (step.may_end_task() && step == last_planned).then_some(TaskEnd::Succeeded)
}

/// Why a step may not begin together with the end of another (`then_begin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeginRefused {
    /// The step that ends is the one said to begin.
    SameStep,
    /// The step that ends failed: nothing runs after a failed step.
    AfterFailure,
    /// The step that ends is the last of its task.
    AfterLast,
    /// The step is fetch, which the server records itself.
    NotByAgent,
}

/// Checks a step's end that also begins `next`: only a step that succeeded without
/// ending its task is followed by another, never by itself or by fetch.
pub fn check_then_begin(
    ending: StepName,
    succeeded: bool,
    ends_task: bool,
    next: StepName,
) -> Result<(), BeginRefused> {
    if !next.begun_by_agent() {
        Err(BeginRefused::NotByAgent)
    } else if next == ending {
        Err(BeginRefused::SameStep)
    } else if !succeeded {
        Err(BeginRefused::AfterFailure)
    } else if ends_task {
        Err(BeginRefused::AfterLast)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_kinds_keep_their_stored_names() {
        for kind in ReleaseKind::ALL {
            assert_eq!(ReleaseKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(ReleaseKind::CatchUp.as_str(), "catch-up");
        assert_eq!(ReleaseKind::Exec.as_str(), "exec");
        assert_eq!(ReleaseKind::parse("deploy"), None);
        assert!(!ReleaseKind::Exec.publishes());
        assert!(!ReleaseKind::Exec.stops_on_failures());
        assert!(ReleaseKind::Rollback.takes_scaling_lease());
        assert!(!ReleaseKind::CatchUp.takes_scaling_lease());
        assert!(!ReleaseKind::Exec.takes_scaling_lease());
    }

    #[test]
    fn only_the_last_planned_step_ends_a_task_well_and_any_failure_fails_it() {
        use StepName::*;
        let plan = StepName::plan(true, true);
        let last = *plan.last().unwrap();
        assert_eq!(task_end(Verify, true, last), Some(TaskEnd::Succeeded));
        assert_eq!(task_end(Start, true, last), None);
        assert_eq!(task_end(Start, true, Start), Some(TaskEnd::Succeeded));
        assert_eq!(task_end(Exec, true, Exec), Some(TaskEnd::Succeeded));
        for step in StepName::ALL {
            assert_eq!(task_end(step, false, last), Some(TaskEnd::Failed));
        }
        // A step that can never be last does not end a task even if named last.
        assert_eq!(task_end(Pull, true, Pull), None);
    }

    #[test]
    fn steps_follow_their_plan() {
        use StepName::*;
        let plan = StepName::plan(true, false);
        assert_eq!(Fetch.next_in(&plan), Some(Prepare));
        assert_eq!(Pull.next_in(&plan), Some(Stop));
        assert_eq!(Start.next_in(&plan), None);
        assert_eq!(Verify.next_in(&plan), None);
        assert_eq!(Fetch.next_in(&StepName::exec_plan()), Some(Exec));
        assert!(!Fetch.begun_by_agent());
        assert!(Exec.begun_by_agent());
    }

    #[test]
    fn a_step_begins_with_an_end_only_after_a_success_that_leaves_the_task_running() {
        use StepName::*;
        assert_eq!(check_then_begin(Pull, true, false, Stop), Ok(()));
        assert_eq!(
            check_then_begin(Pull, true, false, Pull),
            Err(BeginRefused::SameStep)
        );
        assert_eq!(
            check_then_begin(Pull, false, true, Stop),
            Err(BeginRefused::AfterFailure)
        );
        assert_eq!(
            check_then_begin(Start, true, true, Verify),
            Err(BeginRefused::AfterLast)
        );
        assert_eq!(
            check_then_begin(Prepare, true, false, Fetch),
            Err(BeginRefused::NotByAgent)
        );
    }

    #[test]
    fn batches_differ_by_at_most_one_larger_first() {
        assert_eq!(plan_batches(4, 2), vec![2, 2]);
        assert_eq!(plan_batches(5, 2), vec![3, 2]);
        assert_eq!(plan_batches(10, 3), vec![4, 3, 3]);
        assert_eq!(plan_batches(2, 5), vec![1, 1]);
        assert_eq!(plan_batches(7, 1), vec![7]);
        assert!(plan_batches(0, 3).is_empty());
        for n in 0..60 {
            for b in 1..=12 {
                let plan = plan_batches(n, b);
                assert_eq!(plan.iter().sum::<usize>(), n);
                assert!(plan.iter().all(|&s| s > 0));
                assert!(plan.windows(2).all(|w| w[0] >= w[1] && w[0] - w[1] <= 1));
                assert_eq!(plan.len(), if n == 0 { 0 } else { (b as usize).min(n) });
            }
        }
    }

    #[test]
    fn batch_counts_are_bounded() {
        assert!(validate_batches(0).is_err());
        assert!(validate_batches(101).is_err());
        assert!(validate_batches(100).is_ok());
    }

    #[test]
    fn pauses() {
        assert!(!PauseMode::Auto.pauses_after(0, 3));
        assert!(PauseMode::First.pauses_after(0, 3));
        assert!(!PauseMode::First.pauses_after(1, 3));
        assert!(!PauseMode::First.pauses_after(0, 1));
        assert!(PauseMode::Each.pauses_after(1, 3));
        assert!(!PauseMode::Each.pauses_after(2, 3));
        assert_eq!(PauseMode::parse("each"), Ok(PauseMode::Each));
        assert_eq!(PauseMode::parse("sometimes").unwrap_err().field, "pause");
    }

    #[test]
    fn terminal_states_are_final() {
        for from in ReleaseState::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in ReleaseState::ALL {
                assert!(!from.can_become(to));
            }
        }
        assert!(ReleaseState::Running.can_become(ReleaseState::Paused));
        assert!(ReleaseState::Paused.can_become(ReleaseState::Running));
        assert!(!ReleaseState::Pending.can_become(ReleaseState::Paused));
    }

    #[test]
    fn step_plans() {
        use StepName::*;
        assert_eq!(
            StepName::plan(true, true),
            vec![Fetch, Prepare, Pull, Stop, Start, Verify]
        );
        assert_eq!(
            StepName::plan(false, false),
            vec![Fetch, Prepare, Stop, Start]
        );
        assert_eq!(StepName::parse("pull"), Some(Pull));
        assert_eq!(StepName::exec_plan(), vec![Fetch, Exec]);
        assert_eq!(StepName::parse("exec"), Some(Exec));
    }
}
