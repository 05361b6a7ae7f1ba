// Package storebench measures the relation cache against the real stores:
// the cost of a miss (backend lookup and lease, the store query, the fill)
// and of the same check without the cache, and the realistic mix with its
// changes written through the store (and invalidated by relcache.Wrap). It
// holds only benchmarks: SQLite always, MySQL when GOIM_TEST_MYSQL_DSN is
// set, the Redis backend when GOIM_TEST_REDIS_ADDR is set.
//
//	go test -run XXX -bench . ./internal/relcache/storebench/
//
// It is a package of its own so that the relcache tests do not depend on
// the store implementations building.
package storebench
