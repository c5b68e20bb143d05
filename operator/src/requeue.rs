//! When a controller looks at an object again without a watch event: part
//! of each `decide`'s answer, turned into kube's `Action` by the controller.

use std::time::Duration;

use kube::runtime::controller::Action;

/// The next reconcile of an object, absent a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requeue {
    /// Only a watch event (the object is done, or waits on a change).
    OnChange,
    /// After the controller's resync interval, a safety net behind the
    /// watches for objects still in progress.
    Resync,
    /// After this delay (a transient failure to retry).
    After(Duration),
}

impl Requeue {
    pub fn action(self, resync: Duration) -> Action {
        match self {
            Requeue::OnChange => Action::await_change(),
            Requeue::Resync => Action::requeue(resync),
            Requeue::After(delay) => Action::requeue(delay),
        }
    }
}
