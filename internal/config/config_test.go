package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "goim.yaml")
	yaml := "data_dir: /from/file\nhttp_addr: ':1000'\ncomet:\n  tcp_addr: ':2000'\n  heartbeat: 45s\nlogic:\n  admin_key: filekey\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		env   map[string]string
		args  []string
		check func(t *testing.T, c Config)
	}{
		{"defaults", nil, nil, func(t *testing.T, c Config) {
			if c.HTTPAddr != ":3111" || c.Comet.TCPAddr != ":3101" || c.Comet.WSAddr != ":3102" || c.DataDir != "./data" || c.Store.Driver != "sqlite" {
				t.Fatalf("defaults: %+v", c)
			}
		}},
		{"file", nil, []string{"--config", file}, func(t *testing.T, c Config) {
			if c.DataDir != "/from/file" || c.HTTPAddr != ":1000" || c.Comet.TCPAddr != ":2000" || c.Comet.Heartbeat != 45*time.Second || c.Logic.AdminKey != "filekey" {
				t.Fatalf("file values not applied: %+v", c)
			}
			if c.Comet.WSAddr != ":3102" {
				t.Fatalf("a value absent from the file lost its default: %q", c.Comet.WSAddr)
			}
		}},
		{"env over file", map[string]string{"GOIM_CONFIG": file, "GOIM_HTTP_ADDR": ":1111", "GOIM_INSECURE_MID_AUTH": "true", "GOIM_HEARTBEAT": "1m"}, nil, func(t *testing.T, c Config) {
			if c.HTTPAddr != ":1111" || c.DataDir != "/from/file" || !c.Logic.InsecureMidAuth || c.Comet.Heartbeat != time.Minute {
				t.Fatalf("env not applied over file: %+v", c)
			}
		}},
		{"flags over env", map[string]string{"GOIM_HTTP_ADDR": ":1111", "GOIM_TCP_ADDR": ":2222"}, []string{"--config=" + file, "--http-addr", ":9999", "--max-conns-per-ip", "7"}, func(t *testing.T, c Config) {
			if c.HTTPAddr != ":9999" || c.Comet.TCPAddr != ":2222" || c.Comet.MaxConnsPerIP != 7 {
				t.Fatalf("flags not applied over env: %+v", c)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load("test", tt.args, env(tt.env), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func TestInvalid(t *testing.T) {
	dir := t.TempDir()
	unknown := filepath.Join(dir, "unknown.yaml")
	_ = os.WriteFile(unknown, []byte("no_such_field: 1\n"), 0o600)
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"short secret", nil, []string{"--jwt-secret", "short"}, "jwt_secret"},
		{"bad level", map[string]string{"GOIM_LOG_LEVEL": "loud"}, nil, "log_level"},
		{"bad bool env", map[string]string{"GOIM_INSECURE_MID_AUTH": "maybe"}, nil, "GOIM_INSECURE_MID_AUTH"},
		{"unknown yaml field", nil, []string{"--config", unknown}, "no_such_field"},
		{"missing file", nil, []string{"--config", filepath.Join(dir, "absent.yaml")}, "config file"},
		{"mysql without dsn", nil, []string{"--store", "mysql"}, "dsn"},
		{"unknown store", nil, []string{"--store", "oracle"}, "store.driver"},
		{"stray argument", nil, []string{"extra"}, "unexpected"},
		{"unknown flag", nil, []string{"--nope"}, "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load("test", tt.args, env(tt.env), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

func TestEnvName(t *testing.T) {
	if got := EnvName("max-conns-per-ip"); got != "GOIM_MAX_CONNS_PER_IP" {
		t.Fatal(got)
	}
}
