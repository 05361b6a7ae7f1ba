package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

func run(t *testing.T, getenv map[string]string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), args, Env{Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return getenv[k] }})
	return out.String(), errb.String(), code
}

func TestSeedMigrateToken(t *testing.T) {
	env := map[string]string{"GOIM_DATA_DIR": t.TempDir()}
	out, errs, code := run(t, env, "users", "seed", "--count", "3", "--prefix", "bench")
	if code != 0 {
		t.Fatalf("seed: %d %s", code, errs)
	}
	var seeded struct {
		UserIDs []int64 `json:"user_ids"`
	}
	if err := json.Unmarshal([]byte(out), &seeded); err != nil || len(seeded.UserIDs) != 3 {
		t.Fatalf("seed output %q: %v", out, err)
	}
	// Seeding again returns the same accounts.
	out2, _, _ := run(t, env, "users", "seed", "--count", "3", "--prefix", "bench")
	if out2 != out {
		t.Fatalf("second seed %q, first %q", out2, out)
	}
	if out, errs, code := run(t, env, "migrate"); code != 0 || !strings.Contains(out, "latest schema") {
		t.Fatalf("migrate: %d %q %q", code, out, errs)
	}
	tok, errs, code := run(t, env, "token", "--user", "1", "--ttl", "1m")
	if code != 0 || strings.Count(strings.TrimSpace(tok), ".") != 2 {
		t.Fatalf("token: %d %q %q", code, tok, errs)
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage"},
		{[]string{"bogus"}, 2, "unknown command"},
		{[]string{"token"}, 1, "--user"},
		{[]string{"users", "seed", "--count", "0"}, 1, "--count"},
		{[]string{"users"}, 1, "usage"},
		{[]string{"comet"}, 1, "--logic-addrs"},
		{[]string{"job"}, 1, "--comet-addrs"},
		{[]string{"job", "--comet-addrs", "c1=127.0.0.1:1"}, 1, "mysql"},
		{[]string{"logic"}, 1, "jwt_secret"},
		{[]string{"logic", "--jwt-secret", strings.Repeat("s", 32)}, 1, "mysql"},
	}
	for _, tt := range tests {
		out, errs, code := run(t, map[string]string{"GOIM_DATA_DIR": t.TempDir()}, tt.args...)
		if code != tt.code || !strings.Contains(out+errs, tt.want) {
			t.Errorf("%v: code %d, output %q %q; want %d and %q", tt.args, code, out, errs, tt.code, tt.want)
		}
	}
}
