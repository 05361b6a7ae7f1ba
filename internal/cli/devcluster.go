package cli

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/goimdev/goim/internal/config"
	"github.com/goimdev/goim/internal/devcluster"
)

// runCluster starts a local cluster of real processes (make cluster) and
// stops it on SIGINT/SIGTERM.
func runCluster(ctx context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	dir := fs.String("dir", "./data/cluster", "logs and data of the nodes")
	comets := fs.Int("comets", 2, "comet processes")
	logics := fs.Int("logics", 1, "logic processes")
	jobs := fs.Int("jobs", 2, "job processes")
	dsn := fs.String("mysql-dsn", "root@tcp(127.0.0.1:3306)/goim_cluster", "MySQL DSN; the database is created when missing")
	redisAddr := fs.String("redis-addr", "127.0.0.1:6379", "Redis address")
	brokers := fs.String("kafka-brokers", "", "Kafka brokers (empty: an in-process kfake cluster)")
	etcd := fs.String("etcd-endpoints", "", "etcd endpoints (empty: an embedded etcd)")
	heartbeat := fs.Duration("heartbeat", 0, "comet heartbeat interval (0: the default)")
	readyFile := fs.String("ready-file", "", "write the cluster's addresses to this file once it is up (scripts wait for it)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	if err := createDatabase(ctx, *dsn); err != nil {
		return err
	}
	logCfg := config.Default()
	cfg := devcluster.Config{Bin: bin, Dir: *dir, Comets: *comets, Logics: *logics, Jobs: *jobs, MySQLDSN: *dsn,
		RedisAddr: *redisAddr, KafkaBrokers: *brokers, EtcdEndpoints: *etcd, JWTSecret: env.Getenv("GOIM_JWT_SECRET"),
		Log: logCfg.Logger(env.Stderr)}
	if *heartbeat > 0 {
		cfg.Args = append(cfg.Args, "--heartbeat", heartbeat.String())
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	c, err := devcluster.Start(ctx, cfg)
	if err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "kafka=%s\netcd=%s\n", c.KafkaBrokers(), c.EtcdEndpoints())
	var tcp, ws, http, pids []string
	for _, n := range c.Nodes("") {
		switch n.Role {
		case "comet":
			tcp, ws = append(tcp, n.TCP), append(ws, n.WS)
			pids = append(pids, strconv.Itoa(n.Pid()))
		case "logic":
			http = append(http, n.HTTP)
		}
	}
	fmt.Fprintf(&b, "tcp=%s\nws=%s\nhttp=%s\ncomet_pids=%s\n", strings.Join(tcp, ","), strings.Join(ws, ","),
		strings.Join(http, ","), strings.Join(pids, ","))
	fmt.Fprintf(env.Stdout, "goim cluster up (logs in %s; Ctrl-C stops it)\n%s", *dir, b.String())
	fmt.Fprintf(env.Stdout, "a token: GOIM_JWT_SECRET=<the secret> goim token --user 1; the secret is in %s\n",
		filepath.Join(*dir, "jwt.secret"))
	if err := os.WriteFile(filepath.Join(*dir, "jwt.secret"), []byte(c.JWTSecret()), 0o600); err != nil {
		return err
	}
	if *readyFile != "" {
		if err := os.WriteFile(*readyFile, []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	<-ctx.Done()
	stop()
	sctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return c.Close(sctx)
}

// createDatabase creates the DSN's database when it does not exist.
func createDatabase(ctx context.Context, dsn string) error {
	mc, err := mysql.ParseDSN(dsn)
	if err != nil {
		return fmt.Errorf("mysql dsn: %w", err)
	}
	name := mc.DBName
	if name == "" {
		return fmt.Errorf("mysql dsn %q names no database", dsn)
	}
	mc.DBName = ""
	db, err := sql.Open("mysql", mc.FormatDSN())
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS `"+strings.ReplaceAll(name, "`", "``")+"` CHARACTER SET utf8mb4")
	if err != nil {
		return fmt.Errorf("create database %s (is MySQL/MariaDB running? apt-get install mariadb-server): %w", name, err)
	}
	return nil
}
