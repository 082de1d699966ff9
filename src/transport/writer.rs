//! The link of a transport whose client is driven by one writer task (Redis, MongoDB): the
//! engine's publishes become jobs on a channel, in the engine's order, and the task answers
//! each; what the task says between answers (held back, trouble, lost) comes back as signals.

use std::future::Future;

use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{Answer, Link, Outcome, Signal};
use crate::broker::BrokerError;
use crate::delivery::Message;

/// A message as a writer task takes it, with where its answer goes.
pub(crate) trait Job: Send + 'static {
    fn new(message: &Message, answer: oneshot::Sender<Outcome>) -> Self;
}

/// The jobs a writer task takes, and where it sends its signals.
pub(crate) type Queued<J> = mpsc::UnboundedReceiver<J>;
pub(crate) type Signals = mpsc::UnboundedSender<Signal>;

pub(crate) struct WriterLink<J> {
    node: String,
    /// The destination as the link's loss names it (`Redis`, `MongoDB`).
    destination: &'static str,
    jobs: mpsc::UnboundedSender<J>,
    signals: mpsc::UnboundedReceiver<Signal>,
    writer: JoinHandle<()>,
}

impl<J: Job> WriterLink<J> {
    /// Spawns the writer task `run(jobs, signals)` of a link to `node`.
    pub fn start<W>(
        node: String,
        destination: &'static str,
        run: impl FnOnce(Queued<J>, Signals) -> W,
    ) -> Self
    where
        W: Future<Output = ()> + Send + 'static,
    {
        let (jobs, queued) = mpsc::unbounded_channel();
        let (signal, signals) = mpsc::unbounded_channel();
        WriterLink {
            node,
            destination,
            jobs,
            signals,
            writer: tokio::spawn(run(queued, signal)),
        }
    }

    fn ended(destination: &str) -> BrokerError {
        BrokerError::Lost {
            detail: format!("the connection to {destination} ended"),
        }
    }
}

impl<J: Job> Link for WriterLink<J> {
    fn node(&self) -> &str {
        &self.node
    }

    fn publish(&self, message: &Message) -> Answer {
        let (answer, answered) = oneshot::channel();
        // Sent now, in the engine's order; the writer keeps it.
        let sent = self.jobs.send(J::new(message, answer)).is_ok();
        let destination = self.destination;
        Box::pin(async move {
            match answered.await {
                Ok(outcome) if sent => outcome,
                _ => Outcome::Failed(Self::ended(destination)),
            }
        })
    }

    fn broken(&self) -> Option<BrokerError> {
        self.writer
            .is_finished()
            .then(|| Self::ended(self.destination))
    }

    async fn signal(&mut self) -> Option<Signal> {
        self.signals.recv().await
    }

    async fn close(self) {
        // Unanswered messages are answered `Failed` when their senders drop: they stay ours.
        self.writer.abort();
    }
}

/// The documents of a body: the elements of an array (cut at the packer's offsets when it
/// gave them, else parsed), or the body itself.
pub(crate) fn documents<'b>(body: &'b [u8], ends: &[u32]) -> Vec<&'b [u8]> {
    if body.first() != Some(&b'[') {
        return vec![body];
    }
    if !ends.is_empty() {
        let mut docs = Vec::with_capacity(ends.len());
        let mut start = 1;
        for &end in ends {
            match body.get(start..end as usize) {
                Some(doc) => docs.push(doc),
                // Offsets that do not fit the body: parse it instead.
                None => return documents(body, &[]),
            }
            start = end as usize + 1;
        }
        return docs;
    }
    if let Ok(docs) = serde_json::from_slice::<Vec<&RawValue>>(body) {
        return docs.into_iter().map(|d| d.get().as_bytes()).collect();
    }
    vec![body]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_array_body_is_split_into_its_documents_and_an_object_is_one() {
        let body = br#"[{"a":1},{"b":[2,3]}]"#;
        let want = [br#"{"a":1}"#.as_slice(), br#"{"b":[2,3]}"#];
        assert_eq!(documents(body, &[]), want, "parsed");
        assert_eq!(
            documents(body, &[8, 20]),
            want,
            "cut at the packer's offsets"
        );
        assert_eq!(documents(body, &[8, 99]), want, "bad offsets: parsed");
        assert_eq!(documents(br#"{"a":1}"#, &[]), [br#"{"a":1}"#.as_slice()]);
    }
}
