//! The notice that a recorded state changed, sent by the scheduler to live views.

/// A recorded state change of a run or one of its task instances, published for live views.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateChange {
    pub run_pk: i64,
}
