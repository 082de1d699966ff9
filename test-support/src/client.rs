//! The harness's own AMQP client: declares and binds, drains queues, deletes exchanges, on a
//! runtime of its own (plain or TLS with a client certificate).

use std::time::Duration;

use lapin::options::{
    BasicGetOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::types::{FieldTable, ShortString};
use lapin::{Connection, ConnectionProperties, ExchangeKind};

use crate::certs::{Ca, Leaf};

/// How the harness itself connects: a URI and, for TLS, its roots and client identity.
#[derive(Clone, Debug)]
pub struct Client {
    pub uri: String,
    pub tls: OwnedTLSConfig,
}

impl Client {
    pub fn plain(uri: String) -> Client {
        Client {
            uri,
            tls: OwnedTLSConfig::default(),
        }
    }

    pub fn tls(uri: String, ca: &Ca, leaf: &Leaf) -> Client {
        Client {
            uri,
            tls: OwnedTLSConfig {
                identity: Some(OwnedIdentity::PKCS8 {
                    pem: leaf.cert_pem.clone().into_bytes(),
                    key: leaf.key_pem.clone().into_bytes(),
                }),
                cert_chain: Some(ca.pem.clone()),
            },
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    async fn connect(&self) -> Connection {
        let runtime = lapin::runtime::default_runtime().expect("lapin runtime");
        Connection::connect_with_config(
            &self.uri,
            ConnectionProperties::default(),
            self.tls.clone(),
            runtime,
        )
        .await
        .unwrap_or_else(|e| panic!("the harness cannot connect to its node: {e}"))
    }

    /// Declares `exchange` as the shipper does (durable topic) and a durable `queue` bound to
    /// it with `#`.
    pub fn bind(&self, exchange: &str, queue: &str) {
        Client::runtime().block_on(async {
            let connection = self.connect().await;
            let channel = connection.create_channel().await.expect("channel");
            channel
                .exchange_declare(
                    ShortString::from(exchange),
                    ExchangeKind::Topic,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .expect("declare exchange");
            channel
                .queue_declare(
                    ShortString::from(queue),
                    QueueDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .expect("declare queue");
            channel
                .queue_bind(
                    ShortString::from(queue),
                    ShortString::from(exchange),
                    ShortString::from("#"),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .expect("bind");
            let _ = connection.close(200, ShortString::from("bound")).await;
        });
    }

    /// Deletes `exchange` (its bindings go with it).
    pub fn delete_exchange(&self, exchange: &str) {
        Client::runtime().block_on(async {
            let connection = self.connect().await;
            let channel = connection.create_channel().await.expect("channel");
            channel
                .exchange_delete(
                    ShortString::from(exchange),
                    ExchangeDeleteOptions::default(),
                )
                .await
                .expect("delete exchange");
            let _ = connection.close(200, ShortString::from("deleted")).await;
        });
    }

    /// Takes every message the queue holds now (no ack: they are gone), as JSON documents (an
    /// array body is one document per element).
    pub fn drain(&self, queue: &str) -> Vec<serde_json::Value> {
        Client::runtime().block_on(async {
            let connection = self.connect().await;
            let channel = connection.create_channel().await.expect("channel");
            let mut docs = Vec::new();
            while let Some(message) = channel
                .basic_get(ShortString::from(queue), BasicGetOptions { no_ack: true })
                .await
                .expect("basic.get")
            {
                let body = &message.delivery.data;
                let text = std::str::from_utf8(body).expect("a UTF-8 body");
                match serde_json::from_str(text).expect("a JSON body") {
                    serde_json::Value::Array(items) => docs.extend(items),
                    doc => docs.push(doc),
                }
            }
            let _ = connection.close(200, ShortString::from("drained")).await;
            docs
        })
    }

    /// Drains `queue` until `n` documents came or `timeout` passed.
    pub fn drain_at_least(
        &self,
        queue: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<serde_json::Value> {
        let deadline = std::time::Instant::now() + timeout;
        let mut docs = Vec::new();
        loop {
            docs.extend(self.drain(queue));
            if docs.len() >= n || std::time::Instant::now() >= deadline {
                return docs;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
