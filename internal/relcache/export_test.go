package relcache

import "github.com/redis/go-redis/v9"

// NewRedisScripted returns a Redis backend that uses the Lua lookups of
// servers without SET NX GET (Redis < 7.0).
func NewRedisScripted(c redis.UniversalClient, cfg RedisConfig) (*Redis, error) {
	r, err := NewRedis(c, cfg)
	if r != nil {
		r.scripted.Store(true)
	}
	return r, err
}
