//! What PostgreSQL needs said its own way.

use crate::driver::Dialect;

pub(crate) const DIALECT: Dialect = Dialect {
    name: "postgres",
    id_column: "BIGSERIAL PRIMARY KEY",
    doc_column: "JSONB",
    big: "BIGINT",
    doc_select: "doc::text",
    doc_param: "$1::jsonb",
    // Several processes may relay one outbox: each takes rows the others have not locked.
    lock_rows: " FOR UPDATE SKIP LOCKED",
    begin: None,
    max_connections: 8,
    after_connect: None,
};
