// Package testenv gives tests the external services they may use: a fresh
// MySQL database and the Redis address, from GOIM_TEST_MYSQL_DSN and
// GOIM_TEST_REDIS_ADDR. A test that needs a service that is not configured
// is skipped with a message saying how to get it.
package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/redis/go-redis/v9"
)

// Environment variables naming the test services.
const (
	MySQLEnv = "GOIM_TEST_MYSQL_DSN"
	RedisEnv = "GOIM_TEST_REDIS_ADDR"
)

// MySQLServerDSN returns GOIM_TEST_MYSQL_DSN, or skips the test saying why.
func MySQLServerDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(MySQLEnv)
	if dsn == "" {
		t.Skip(MySQLEnv + " not set: MySQL test skipped (apt-get install -y mariadb-server, then " +
			MySQLEnv + "='root@tcp(127.0.0.1:3306)/test')")
	}
	return dsn
}

// MySQLDSN creates a new empty database named prefix_<random> on the server
// of GOIM_TEST_MYSQL_DSN, drops it when the test ends, and returns its DSN.
// It skips the test when the variable is unset.
func MySQLDSN(t testing.TB, prefix string) string {
	t.Helper()
	cfg, err := gomysql.ParseDSN(MySQLServerDSN(t))
	if err != nil {
		t.Fatalf("%s: %v", MySQLEnv, err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := prefix + "_" + hex.EncodeToString(b[:])
	exec := func(q string) error {
		db, err := sql.Open("mysql", cfg.FormatDSN())
		if err != nil {
			return err
		}
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err = db.ExecContext(ctx, q)
		return err
	}
	if err := exec("CREATE DATABASE " + name + " CHARACTER SET utf8mb4"); err != nil {
		t.Fatalf("create database on %s: %v", cfg.Addr, err)
	}
	t.Cleanup(func() {
		if err := exec("DROP DATABASE IF EXISTS " + name); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	cfg.DBName = name
	return cfg.FormatDSN()
}

// RedisAddr returns GOIM_TEST_REDIS_ADDR, or skips the test saying why.
func RedisAddr(t testing.TB) string {
	t.Helper()
	addr := os.Getenv(RedisEnv)
	if addr == "" {
		t.Skip(RedisEnv + " not set: Redis test skipped (apt-get install -y redis-server, then " +
			RedisEnv + "=127.0.0.1:6379)")
	}
	return addr
}

// RedisPrefix returns a key prefix of its own for one test on the Redis of
// GOIM_TEST_REDIS_ADDR (runs never see each other's keys) and deletes the
// keys under it when the test ends. It skips the test when the variable is
// unset.
func RedisPrefix(t testing.TB) string {
	t.Helper()
	addr := RedisAddr(t)
	var b [8]byte
	_, _ = rand.Read(b[:])
	prefix := "goim:test:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		defer rdb.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if len(keys) > 0 {
			rdb.Del(ctx, keys...)
		}
	})
	return prefix
}
