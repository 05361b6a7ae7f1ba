package auth

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestLoadOrCreateSecret(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s1, err := LoadOrCreateSecret(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(s1) != 32 {
		t.Fatalf("secret is %d bytes", len(s1))
	}
	fi, err := os.Stat(filepath.Join(dir, SecretFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file mode %v, want 0600", fi.Mode().Perm())
	}
	s2, err := LoadOrCreateSecret(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s1, s2) {
		t.Fatal("secret changed on reload")
	}
	if _, err := NewIssuer(s1, "goim"); err != nil {
		t.Fatalf("created secret unusable: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("data directory holds %d entries, want only the secret", len(entries))
	}
}

func TestLoadOrCreateSecretBadFile(t *testing.T) {
	tests := []struct{ name, content string }{
		{"not hex", "zz not hex"},
		{"too short", "00112233"},
		{"empty", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, SecretFile), []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if s, err := LoadOrCreateSecret(dir); err == nil {
				t.Fatalf("accepted %q: %x", tt.content, s)
			}
		})
	}
	if _, err := LoadOrCreateSecret(""); err == nil {
		t.Fatal("accepted an empty directory name")
	}
}

func TestLoadOrCreateSecretConcurrent(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	var wg sync.WaitGroup
	got := make([][]byte, n)
	errs := make([]error, n)
	for k := range n {
		wg.Go(func() { got[k], errs[k] = LoadOrCreateSecret(dir) })
	}
	wg.Wait()
	for k := range n {
		if errs[k] != nil {
			t.Fatal(errs[k])
		}
		if !bytes.Equal(got[k], got[0]) {
			t.Fatal("concurrent first calls returned different secrets")
		}
	}
}
