package cache

import (
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/wedsync/pulse/internal/testenv"
)

func redisURL() string { return testenv.RedisURL() }

func sharedClient(t testing.TB) *redis.Client { return testenv.Redis(t) }

func testPrefix(t testing.TB, c *redis.Client) string { return testenv.RedisPrefix(t, c, "cache") }

func startRedisServer(t testing.TB) *testenv.RedisServer { return testenv.StartRedisServer(t) }
