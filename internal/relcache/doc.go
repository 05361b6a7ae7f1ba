// Package relcache caches the relation lookups of the message send path:
// is A a friend of B, did A block B, and B's membership of group G (role,
// muted until, plus the group's mute-all and dismissed flags), so that a
// relation check on a cache hit does no SQL query.
//
// A Cache answers the lookups (the Checker interface) from a Backend and, on
// a miss, from a Source (the relation store: store.Friends, store.Blocks and
// store.Groups satisfy it). Negative answers (not friends, not blocked, not a
// member, no such group) are cached too. Logic invalidates after every change
// (the Invalidator half of Checker), or wraps its store with Wrap, which
// invalidates after each relation-changing store call.
//
// Two backends implement the small Backend interface: Memory, a sharded map
// with TTLs and a CLOCK-evicted size bound (the one-process default; correct
// only when a single logic process changes the relations), and Redis (the
// distributed mode: every logic process shares the entries and sees every
// other's invalidations). The cachetest package is the conformance suite both
// pass; storebench measures them against the real stores.
//
// Costs measured on the 2-core test machine: a Memory hit takes about
// 0.2 µs (0.3 µs for a membership) and allocates nothing; a Redis hit is one
// round trip, 25-35 µs here, which is more than a SQLite primary-key query
// (6-12 µs) but less than a MySQL one (50-60 µs). So the one-process server
// uses Memory, and Redis pays off with MySQL and several logic processes.
//
// # Keys and group generations
//
// Entries are keyed by (kind, a, b): friend (user, friend), block (user,
// blocked), group (group) and member (group, user). A group entry carries a
// generation; a member entry records the generation of the group entry it was
// filled under and counts as a hit only while that generation is current.
// InvalidateGroup therefore deletes a single key (the group entry) and every
// member entry of the group becomes a miss: no KEYS scan, no per-group set of
// member keys. Generations are lease tokens (below), never reused for a key:
// a counter in Memory, 64 random bits in Redis.
//
// # Races: leases
//
// A lookup that read the store before an invalidation must not put its value
// into the cache after it. The Cache uses leases (as memcache does):
//
//  1. A miss installs a lease on the key (a unique token) in the same backend
//     call that found the key empty (SET NX GET on Redis); while a lease is
//     live, other misses of the key read the store but do not fill it.
//  2. The lease holder reads the Source, then stores its value only if the
//     key still holds its lease (a compare-and-set: a Lua script on Redis).
//  3. An invalidation deletes the key, lease included, so a fill that read
//     the store before the invalidation fails its compare-and-set.
//
// Because the lease is taken before the store is read, any change committed
// after the read is followed by an invalidation that removes the lease. For
// membership, the member value is tagged with the group generation observed
// before the store read, so a group invalidation during a member fill makes
// that fill stale even though the member key itself was not deleted. Leases
// expire after a LeaseTTL (default 2s) so that a crashed filler does not keep
// a key uncached. Deleting-after-write with a short TTL was rejected: it
// still lets a slow reader write a stale value after the last delete.
//
// What remains: a process that crashes between the store commit and the
// invalidation, or an invalidation lost while the backend is down and the
// pending queue is full, leaves a stale entry until its TTL (Config.TTL,
// default 10m; Config.NegativeTTL, default 2m).
//
// # Backend failures
//
// A backend error never fails a lookup: the Cache answers from the Source,
// counts the error (goim_relcache_errors_total{backend}) and bypasses the
// backend for Config.RetryAfter (default 1s) so that an unreachable Redis
// costs one timeout per interval, not one per message. Invalidations that
// fail, or arrive while the backend is bypassed, are queued in the process
// (at most Config.MaxPending keys) and deleted before the backend is used
// again. Configure the Redis client with short timeouts and few retries.
//
// # Metrics
//
//	goim_relcache_lookups_total{kind="friend|block|member",result="hit|miss"}
//	goim_relcache_errors_total{backend="memory|redis"}
//	goim_relcache_invalidations_total{kind="friend|block|member|group"}
//	goim_relcache_invalidations_lost_total
//	goim_relcache_memory_evictions_total
//
// The hit ratio, overall and per kind:
//
//	sum(rate(goim_relcache_lookups_total{result="hit"}[5m]))
//	  / sum(rate(goim_relcache_lookups_total[5m]))
//
//	sum by (kind) (rate(goim_relcache_lookups_total{result="hit"}[5m]))
//	  / sum by (kind) (rate(goim_relcache_lookups_total[5m]))
//
// Cache.Stats returns the same counts for one Cache (benchmarks, tests).
package relcache
