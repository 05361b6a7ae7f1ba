package standalone

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/goimdev/goim/client"
	"github.com/goimdev/goim/internal/config"
	"github.com/goimdev/goim/internal/testenv"
)

// crashDirEnv names the data directory of the child process of
// TestSIGKILLKeepsAckedMessages; crashDSNEnv, when set, its MySQL store.
const (
	crashDirEnv = "GOIM_TEST_CRASH_CHILD_DIR"
	crashDSNEnv = "GOIM_TEST_CRASH_CHILD_DSN"
)

// TestCrashChild is the child process of TestSIGKILLKeepsAckedMessages:
// a one-process server on the given data directory that prints its
// addresses and runs until it is killed.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("only run as the child of TestSIGKILLKeepsAckedMessages")
	}
	cfg := config.Default()
	cfg.DataDir = dir
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Comet.TCPAddr = "127.0.0.1:0"
	cfg.Comet.WSAddr = "127.0.0.1:0"
	cfg.JWTSecret = testSecret
	cfg.Logic.SendRate = -1
	if dsn := os.Getenv(crashDSNEnv); dsn != "" {
		cfg.Store.Driver, cfg.Store.MySQL.DSN = "mysql", dsn
	}
	ctx := context.Background()
	s, err := New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("READY %s %s\n", s.TCPAddr(), s.HTTPAddr())
	select {} // until SIGKILL
}

// TestSIGKILLKeepsAckedMessages kills the one-process server with SIGKILL
// in the middle of a stream of sends; after a restart on the same data
// directory every acknowledged message is there with its seq, and the
// seqs have no gap.
func TestSIGKILLKeepsAckedMessages(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	t.Run("sqlite", func(t *testing.T) { testSIGKILL(t, "") })
	t.Run("mysql", func(t *testing.T) { testSIGKILL(t, testenv.MySQLDSN(t, "goim_crash")) })
}

// testSIGKILL is TestSIGKILLKeepsAckedMessages on SQLite (dsn "") or on
// the MySQL database of dsn.
func testSIGKILL(t *testing.T, dsn string) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.v=false")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashDSNEnv+"="+dsn)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	lines := bufio.NewScanner(out)
	var tcpAddr, httpAddr string
	for lines.Scan() {
		if f := strings.Fields(lines.Text()); len(f) == 3 && f[0] == "READY" {
			tcpAddr, httpAddr = f[1], f[2]
			break
		}
	}
	if tcpAddr == "" {
		t.Fatalf("child did not start: %v", lines.Err())
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()

	ctx := testCtx(t)
	api := &client.API{BaseURL: "http://" + httpAddr}
	login := func(name string) user {
		id, err := api.Register(ctx, name, "correct horse battery", name)
		if err != nil {
			t.Fatal(err)
		}
		lr, err := api.Login(ctx, name, "correct horse battery", "", "pc")
		if err != nil {
			t.Fatal(err)
		}
		return user{id: id, token: lr.Token}
	}
	alice, bob := login("kalice"), login("kbob")
	conv := fmt.Sprintf("p_%d_%d", min(alice.id, bob.id), max(alice.id, bob.id))

	// Four connections of alice stream messages to bob until the kill.
	type acked struct {
		msgID string
		seq   int64
	}
	var mu sync.Mutex
	var acks []acked
	var wg sync.WaitGroup
	for c := range 4 {
		cl, err := client.Dial(ctx, client.Config{Addr: tcpAddr, Transport: "tcp", Token: alice.token})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				ack, err := cl.SendMessage(ctx, textReq(fmt.Sprintf("c%d-%d", c, i), bob.id, 0, "before the crash"))
				if err != nil {
					return // the server is gone
				}
				mu.Lock()
				acks = append(acks, acked{ack.MsgID, ack.Seq})
				mu.Unlock()
			}
		}()
	}
	eventually(t, "300 acknowledged messages", func() bool { mu.Lock(); defer mu.Unlock(); return len(acks) >= 300 })
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	killed = true
	_ = cmd.Wait()
	wg.Wait()
	mu.Lock()
	got := append([]acked(nil), acks...)
	mu.Unlock()

	// Restart on the same data directory and read the conversation back.
	s := startServer(t, func(c *config.Config) {
		c.DataDir = dir
		if dsn != "" {
			c.Store.Driver, c.Store.MySQL.DSN = "mysql", dsn
		}
	})
	bs := s.api().WithToken(bob.token)
	stored := make(map[int64]string)
	var maxSeq int64
	for after := int64(0); ; {
		var page struct {
			Messages []client.Message `json:"messages"`
			HasMore  bool             `json:"has_more"`
		}
		if err := bs.Do(ctx, http.MethodGet, fmt.Sprintf("/api/v1/conversations/%s/messages?after_seq=%d&limit=200", conv, after), nil, &page); err != nil {
			t.Fatal(err)
		}
		for _, m := range page.Messages {
			if m.Seq != maxSeq+1 {
				t.Fatalf("seq %d after %d: a gap", m.Seq, maxSeq)
			}
			maxSeq = m.Seq
			stored[m.Seq] = m.MsgID
		}
		if !page.HasMore {
			break
		}
		after = maxSeq
	}
	for _, a := range got {
		if stored[a.seq] != a.msgID {
			t.Fatalf("acknowledged message %s seq %d: stored %q at that seq", a.msgID, a.seq, stored[a.seq])
		}
	}
	if int(maxSeq) < len(got) {
		t.Fatalf("%d messages stored, %d acknowledged", maxSeq, len(got))
	}
	t.Logf("%d acknowledged before SIGKILL, %d stored", len(got), maxSeq)
}
