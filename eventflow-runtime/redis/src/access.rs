//! Telling a refused connection apart: no password, a wrong one, a user without rights.

use eventflow_runtime::ConnectionError;
use redis::Value;
use redis::aio::ConnectionManager;

use crate::backend::conn_err;
use crate::config::redact;

/// Asks the server for `PING` at build, so that a server that needs a password (or refuses
/// the one given) fails the build with that said, instead of every later command failing.
pub(crate) async fn check_access(
    conn: &mut ConnectionManager,
    url: &str,
) -> Result<(), ConnectionError> {
    let Err(e) = redis::cmd("PING").query_async::<Value>(conn).await else {
        return Ok(());
    };
    Err(conn_err(access_problem(&e, url), Some(e)))
}

/// What a failure to connect or to `PING` means, in words (the URL redacted).
pub(crate) fn access_problem(e: &redis::RedisError, url: &str) -> String {
    let url = redact(url);
    match (e.kind(), e.code()) {
        (_, Some("NOAUTH")) => format!(
            "{url} requires authentication, and the URL gives no password (redis://user:password@host/db)"
        ),
        (_, Some("WRONGPASS")) | (redis::ErrorKind::AuthenticationFailed, _) => {
            format!("{url} refused the user name or password in the URL")
        }
        (_, Some("NOPERM")) => format!(
            "the user of {url} may not run PING; eventflow needs the stream, hash and sorted-set commands"
        ),
        _ => format!("cannot connect to {url}: {e}"),
    }
}
