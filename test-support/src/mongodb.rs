//! MongoDB for the tests: nx-27017 (a MongoDB wire-protocol server on SQLite) started by a test
//! on its own port and data directory (LOGCOLLECT_TEST_MONGODB_SERVER, or the project's
//! `.venv/bin/nx-27017`), killed when dropped, and a [`Reader`] of what landed in it.
//!
//! Its limits: no users (every login is refused), no index on a field named `@timestamp`, a
//! capped collection's `max` not enforced.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ::mongodb::bson::{doc, Document};

/// The nx-27017 executable, or a panic saying how to get it.
pub fn server_program() -> PathBuf {
    if let Ok(path) = std::env::var("LOGCOLLECT_TEST_MONGODB_SERVER") {
        return PathBuf::from(path);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/nx-27017");
    if venv.exists() {
        return venv;
    }
    panic!(
        "no nx-27017 (a MongoDB wire-protocol server): install it into the project's .venv \
         (`python3 -m venv .venv && .venv/bin/pip install -r tests/elk/requirements.txt`, as \
         scripts/test does) or name it in LOGCOLLECT_TEST_MONGODB_SERVER"
    )
}

pub use crate::free_port;
use crate::wait_until_listening;

/// An nx-27017 of the test's own, on its own port and data directory; killed when dropped.
pub struct Server {
    child: Child,
    pub port: u16,
}

impl Server {
    /// Starts one on `port` with its data, log and pid files in `dir` (starting it again on
    /// the same `dir` finds what it acknowledged), and waits until it listens.
    pub fn start(port: u16, dir: &Path) -> Server {
        let data = dir.join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let path = |p: PathBuf| p.to_str().expect("UTF-8 path").to_string();
        let program = server_program();
        let child = Command::new(&program)
            .args(["--data-dir", &path(data)])
            .args(["-p", &port.to_string()])
            .args(["--log-file", &path(dir.join("server.log"))])
            .args(["--pid-file", &path(dir.join("server.pid"))])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({e})", program.display()));
        let server = Server { child, port };
        wait_until_listening("nx-27017", port, Duration::from_secs(60));
        server
    }

    /// `mongodb://127.0.0.1:PORT`.
    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a test reads back from a database, with the driver on a runtime of its own.
pub struct Reader {
    runtime: tokio::runtime::Runtime,
    client: ::mongodb::Client,
    database: String,
}

impl Reader {
    /// A reader of the database `logcollect` (the default of `mongodb.database`).
    pub fn new(uri: &str) -> Reader {
        Reader::of(uri, "logcollect")
    }

    /// A reader of `database`.
    pub fn of(uri: &str, database: &str) -> Reader {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let client = runtime
            .block_on(::mongodb::Client::with_uri_str(uri))
            .expect("client");
        Reader {
            runtime,
            client,
            database: database.to_string(),
        }
    }

    fn db(&self) -> ::mongodb::Database {
        self.client.database(&self.database)
    }

    /// Every document of `collection`, in the server's order.
    pub fn docs(&self, collection: &str) -> Vec<Document> {
        let coll = self.db().collection::<Document>(collection);
        self.runtime.block_on(async {
            let mut cursor = coll.find(doc! {}).await.expect("find");
            let mut docs = Vec::new();
            while cursor.advance().await.expect("cursor") {
                docs.push(cursor.deserialize_current().expect("document"));
            }
            docs
        })
    }

    /// How many documents `collection` holds (0 if it cannot be counted).
    pub fn count(&self, collection: &str) -> u64 {
        let coll = self.db().collection::<Document>(collection);
        self.runtime
            .block_on(async { coll.count_documents(doc! {}).await })
            .unwrap_or(0)
    }

    /// Inserts `docs` into `collection` (creating it if needed).
    pub fn insert(&self, collection: &str, docs: Vec<Document>) {
        let coll = self.db().collection::<Document>(collection);
        self.runtime
            .block_on(async { coll.insert_many(docs).await })
            .expect("insert_many");
    }

    /// Runs a command on the database (`create` with options, `createIndexes`, …).
    pub fn command(&self, command: Document) -> Document {
        let db = self.db();
        self.runtime
            .block_on(async { db.run_command(command).await })
            .expect("command")
    }

    /// The collection's entry of `listCollections`.
    pub fn collection_info(&self, name: &str) -> Document {
        let db = self.db();
        self.runtime
            .block_on(async {
                db.run_command(doc! { "listCollections": 1, "filter": { "name": name } })
                    .await
            })
            .ok()
            .and_then(|reply| {
                let batch = reply
                    .get_document("cursor")
                    .ok()?
                    .get_array("firstBatch")
                    .ok()?;
                // nx-27017 answers every collection, whatever the filter.
                batch
                    .iter()
                    .filter_map(|c| c.as_document())
                    .find(|c| c.get_str("name") == Ok(name))
                    .cloned()
            })
            .unwrap_or_else(|| panic!("collection {name} is listed"))
    }

    /// The collection's indexes, as `listIndexes` answers them.
    pub fn indexes(&self, collection: &str) -> Vec<Document> {
        let reply = self.command(doc! { "listIndexes": collection });
        reply
            .get_document("cursor")
            .and_then(|c| c.get_array("firstBatch"))
            .expect("firstBatch")
            .iter()
            .filter_map(|i| i.as_document().cloned())
            .collect()
    }
}
