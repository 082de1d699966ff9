// Run once by the mongo image's entry point (/docker-entrypoint-initdb.d), as the root user,
// when the data directory is new: the user the applications log in as, allowed to read and
// write the logs' database and nothing else (defined in that database: authSource=<database>).
const database = process.env.LCSTACK_MONGODB_DATABASE;
const password = process.env.MONGODB_WRITER_PASSWORD;
if (!database || !password) {
  throw new Error("LCSTACK_MONGODB_DATABASE and MONGODB_WRITER_PASSWORD must be set");
}
db.getSiblingDB(database).createUser({
  user: "logcollect-writer",
  pwd: password,
  roles: [{ role: "readWrite", db: database }],
});
