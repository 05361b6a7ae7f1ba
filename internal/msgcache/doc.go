// Package msgcache caches the recent messages of hot conversations in front
// of the message store's page reads (store.Messages.Messages), so that the
// history and Sync pages of busy conversations are answered without a SQL
// query.
//
// # What is cached
//
// Per conversation a window: the last K messages (Config.WindowSize, default
// 200) by seq, contiguous: the window [lo, hi] holds every seq from lo to hi.
// The window is written only by the committer, after a successful commit, in
// seq order (Cache.Committed); reads never fill it. A batch whose first seq
// is not hi+1 (a commit the cache did not see: a failed cache write, another
// logic process, a restart) drops the window and starts a new one at the
// batch, so a window never has a hole. A recall (Cache.Recalled) drops the
// conversation's window and fences it for Config.RecallFence (default 2s):
// appends during the fence are ignored, so a commit racing with the recall
// cannot put the recalled content back.
//
// A page is served from the window only when the window holds every seq of
// the requested range; otherwise the store answers (a miss). Sequence
// numbers have no gaps in the store (1..max_seq), so "has more" follows from
// the seqs alone, except at the window's top: a page ending at hi is exact
// only if hi is the conversation's max_seq. The committer of a process
// writes the window before it acknowledges the batch, so hi is max_seq for
// a single writer; Config.VerifyTail additionally confirms it with
// store.Messages.Conversation (one primary-key read) for the deployments
// where a writer may die between its commit and its cache write (several
// logic processes on a shared Redis).
//
// # Backends
//
// Memory (the one-process default) keeps per conversation a ring of the
// last K messages, with an LRU over conversations bounded by
// MemoryConfig.MaxConversations. Redis (shared by every logic process) keeps
// a sorted set per conversation, scored by seq, trimmed to K and expiring
// after RedisConfig.TTL; each operation is one Lua script call (one round
// trip). The cachetest-style conformance suite (conformance_test.go) runs
// against both.
//
// # Failures
//
// A backend error never fails a read: the page is read from the store, the
// error counted (goim_msgcache_errors_total{backend}) and the backend
// bypassed for Config.RetryAfter (default 1s). A failed append or recall
// leaves a window that may be stale: its conversation is queued (at most
// Config.MaxPending) and its window deleted before the backend is used
// again. Beyond MaxPending the invalidation is lost (counted in
// goim_msgcache_invalidations_lost_total) and a stale window may be served
// until it is dropped by the next gap or expires (RedisConfig.TTL), unless
// VerifyTail is on, which still catches a missing tail. Losing Redis loses
// no message: the store is the record and answers every miss.
//
// # Metrics
//
//	goim_msgcache_lookups_total{result="hit|miss"}
//	goim_msgcache_errors_total{backend="memory|redis"}
//	goim_msgcache_drops_total{reason="gap|recall|error"}
//	goim_msgcache_invalidations_lost_total
//	goim_msgcache_memory_evictions_total
//
// Hit ratio:
//
//	sum(rate(goim_msgcache_lookups_total{result="hit"}[5m]))
//	  / sum(rate(goim_msgcache_lookups_total[5m]))
//
// Cache.Stats returns the same counts for one Cache.
//
// Unread counters are not mirrored in Redis: the store answers them.
package msgcache
