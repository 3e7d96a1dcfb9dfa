//! The control thread's handles on the workers: commands, questions with a deadline.

use std::sync::Arc;
use std::sync::mpsc::{self, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use super::SwitchError;
use crate::worker::{Command, WorkerShared};

/// How long the control thread waits for a worker to answer.
const WORKER_TIMEOUT: Duration = Duration::from_secs(5);

/// A running worker, as the control thread reaches it.
pub(crate) struct WorkerHandle {
    pub(crate) shared: Arc<WorkerShared>,
    pub(crate) commands: Sender<Command>,
    pub(crate) thread: Option<JoinHandle<()>>,
    pub(crate) cpu: Option<usize>,
}

impl WorkerHandle {
    pub(crate) fn send(&self, command: Command) -> Result<(), SwitchError> {
        self.commands
            .send(command)
            .map_err(|_| SwitchError::WorkerGone(self.shared.id))?;
        self.shared.wake.notify();
        Ok(())
    }

    pub(crate) fn ask<T>(&self, make: impl FnOnce(Sender<T>) -> Command) -> Result<T, SwitchError> {
        let (tx, rx) = mpsc::channel();
        self.send(make(tx))?;
        rx.recv_timeout(WORKER_TIMEOUT)
            .map_err(|_| SwitchError::WorkerGone(self.shared.id))
    }
}

/// Asks every worker in turn and waits for all: returns once each has applied every command
/// sent before.
///
/// # Errors
/// A worker did not answer.
pub(crate) fn barrier(workers: &[WorkerHandle]) -> Result<(), SwitchError> {
    let replies: Vec<_> = workers
        .iter()
        .map(|w| {
            let (tx, rx) = mpsc::channel();
            w.send(Command::Barrier(tx)).map(|()| (w.shared.id, rx))
        })
        .collect::<Result<_, _>>()?;
    for (id, rx) in replies {
        rx.recv_timeout(WORKER_TIMEOUT)
            .map_err(|_| SwitchError::WorkerGone(id))?;
    }
    Ok(())
}
