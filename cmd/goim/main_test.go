package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goimdev/goim/client"
	"github.com/goimdev/goim/protocol"
)

// TestBinary runs the real binary as a user would: `goim standalone` on
// fresh ports and data directory, register and log in over HTTP, mint a
// token with `goim token`, connect over TCP and WebSocket, then SIGTERM:
// every client gets Op 6 server_draining and the process exits 0.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "goim")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	secret := "binary-test-secret-0123456789abcdef"
	httpAddr, tcpAddr, wsAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	var logs bytes.Buffer
	cmd := exec.Command(bin, "standalone", "--data-dir", filepath.Join(dir, "data"),
		"--http-addr", httpAddr, "--tcp-addr", tcpAddr, "--ws-addr", wsAddr, "--drain-window", "200ms")
	cmd.Env = append(os.Environ(), "GOIM_JWT_SECRET="+secret)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})

	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	api := &client.API{BaseURL: "http://" + httpAddr}
	id, err := api.Register(ctx, "newuser", "a good password", "New User")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.Login(ctx, "newuser", "wrong password", "", "pc"); client.ErrorCode(err) != protocol.CodeBadCredentials {
		t.Fatalf("login with a wrong password: %v", err)
	}

	var out bytes.Buffer
	tok := exec.Command(bin, "token", "--user", strconv.FormatInt(id, 10), "--ttl", "10m")
	tok.Env = append(os.Environ(), "GOIM_JWT_SECRET="+secret)
	tok.Stdout, tok.Stderr = &out, &out
	if err := tok.Run(); err != nil {
		t.Fatalf("goim token: %v %s", err, out.String())
	}
	token := strings.TrimSpace(out.String())

	var clients []*client.Client
	for _, c := range []struct{ transport, addr string }{{"tcp", tcpAddr}, {"ws", wsAddr}} {
		cl, err := client.Dial(ctx, client.Config{Addr: c.addr, Transport: c.transport, Token: token, Key: "dev-" + c.transport})
		if err != nil {
			t.Fatalf("%s: %v", c.transport, err)
		}
		defer cl.Close()
		if cl.AuthReply().UserID != id {
			t.Fatalf("authenticated as %d, want %d", cl.AuthReply().UserID, id)
		}
		clients = append(clients, cl)
	}

	metrics, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var mb bytes.Buffer
	_, _ = mb.ReadFrom(metrics.Body)
	metrics.Body.Close()
	if !strings.Contains(mb.String(), "goim_comet_connections") {
		t.Fatal("/metrics has no goim_comet_connections")
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for _, cl := range clients {
		select {
		case <-cl.Done():
		case <-time.After(20 * time.Second):
			t.Fatal("client still connected after SIGTERM")
		}
		var de *client.DisconnectError
		if !errors.As(cl.Err(), &de) || de.Code != protocol.CodeServerDraining {
			t.Fatalf("client ended with %v, want server_draining", cl.Err())
		}
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("server exited with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("server did not exit after SIGTERM")
	}
}

// TestUsage: the command without arguments prints its subcommands.
func TestUsage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	out, err := exec.Command("go", "run", ".", "help").CombinedOutput()
	if err != nil {
		t.Fatalf("%v %s", err, out)
	}
	for _, want := range []string{"standalone", "token", "version"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("help lacks %q:\n%s", want, out)
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

var _ = fmt.Sprint
