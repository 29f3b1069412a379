//! Redis: cache invalidation without blocking the server, a lock with fencing
//! tokens, and `PING` / `INFO keyspace` verifiers.

mod conn;
mod invalidate;
mod lock;
mod verify;

pub use conn::{RedisConn, RedisConnConfig};
pub use invalidate::{Invalidation, RedisInvalidate, RedisInvalidateConfig, count_matching};
pub use lock::RedisLock;
pub use verify::{KeyspaceCheck, RedisKeyspace, RedisKeyspaceConfig, RedisPing, keys_in_info};
