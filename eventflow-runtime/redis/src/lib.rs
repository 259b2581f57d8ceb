//! The Redis Streams backend (feature `redis`): several processes or machines share the
//! work of one consumer group, at least once.
//!
//! ## Keys
//!
//! With `queue = "myapp"`:
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `myapp:stream` | stream | every published event (field `envelope`, JSON; field `handler` when the entry is for one handler only) |
//! | `myapp:delayed` | sorted set | delayed events and scheduled retries, scored by due time (ms, Redis's clock) |
//! | `myapp:dead` | hash | dead letters by id (JSON) |
//! | `myapp:replies:CONSUMER` | stream | answers to this process's requests (field `reply`, JSON); expires 2 minutes after its last answer |
//!
//! **One stream per namespace, routing in the worker.** Every worker reads one stream with
//! one `XREADGROUP`, and the bus's compiled router picks the handlers. A stream per event
//! name would need a read over every stream a worker's patterns might match, could not see
//! names that appear later (`user.*` and a new `user.banned`), and would multiply consumer
//! groups and pending lists. The cost: a worker reads events none of its handlers wants,
//! so give unrelated applications their own `queue`.
//!
//! **Workers with different handlers.** The workers of one group should have the same
//! handlers: each entry goes to the one worker that reads it, which runs *its* matching
//! handlers. When they differ, an entry that no handler of the worker that read it takes
//! (its event matches none, or it is for a handler that worker lacks, as a retried dead
//! letter may be) is never acknowledged unhandled: the worker leaves it pending and does
//! not claim it back for three `claim_idle`s, so a worker that has the handler claims it
//! once it has been idle for `claim_idle` (a delay of about `claim_idle`). After
//! `max_deliveries` deliveries with no taker it goes to dead letters with the reason. A
//! worker bus built with `allow_unhandled(true)` acknowledges an event no handler matches
//! instead.
//!
//! ## Delivery
//!
//! Publish is `XADD` (with an approximate `MAXLEN` when set), pipelined with an `XADD` to
//! the queue's bell stream (`QUEUE:bell`, one entry long). A worker reads with
//! `XREADGROUP` inside a Lua script under a consumer name unique to the process
//! (`host-pid-random`, never reused); the script returns an entry larger than
//! `max_entry_bytes` as its size and the first 4 KiB of at most 16 of its fields, so a
//! worker never receives such an entry whole (claims go through the same cap). When there
//! is nothing to read, the worker blocks on the bell (`XREAD BLOCK`), from the bell's id as
//! of its last read, so no publish in between is missed; entries another program adds to
//! the stream without ringing are read within `block`. The worker runs the matching handlers, and acknowledges (`XACK`) only when every handler's
//! outcome is settled: success, dead letter, or a retry scheduled. A retry is a new entry
//! in the delayed set, added in the same Lua script as the `XACK`, so nothing is lost or
//! doubled between the two and no worker sleeps through a backoff. A promoter in each
//! worker moves due entries from the delayed set to the stream in one Lua script per batch;
//! several workers running it at once neither duplicate nor lose entries.
//!
//! On start a worker first re-reads its own pending entries, then reads new ones. Entries
//! left pending by a consumer that died are claimed (`XPENDING ... IDLE`, then `XCLAIM`)
//! once idle for `claim_idle`; a live worker refreshes the idle time of the entries it is still handling
//! (`XCLAIM ... JUSTID` every third of `claim_idle`), so a long handler is not claimed and
//! run a second time elsewhere. The entry's delivery count is added to the envelope's `attempt`; an entry
//! delivered more than `max_deliveries` times (its handler crashed or hung the worker each
//! time) goes to dead letters.
//!
//! ## Requests
//!
//! `bus.request(event)` publishes the event with `reply_to` naming the asking process's
//! reply stream; the worker that handles it adds the answer there (its handler's value, or
//! its error, once final: after a scheduled retry, the retry answers) before it
//! acknowledges the entry. The asker's listener hands the answer to the request waiting for
//! it; an answer that comes after the request timed out is dropped. A worker answers only
//! into this queue's reply streams.
//!
//! An entry that is not a valid envelope (not JSON, missing fields, a bad name, or larger
//! than `max_entry_bytes`, which is then not decoded) goes to dead letters under the
//! handler name `""` with the reason, and is acknowledged. A dead letter that cannot be
//! stored (a server at `maxmemory` refuses the `HSET`) leaves its entry pending: it is
//! claimed and tried again until the letter is stored.

mod access;
mod ack;
mod backend;
mod claim;
mod config;
mod consumers;
mod dead_letters;
mod delayed;
mod ext;
mod health;
mod lanes;
mod lease;
mod reply;
mod requests;
mod scripts;
mod worker;

pub use backend::RedisBackend;
pub use config::{RedisConfig, redact_url};
pub use dead_letters::RedisDeadLetters;
pub use ext::RedisBusExt;
pub use lanes::MAX_LANE;
