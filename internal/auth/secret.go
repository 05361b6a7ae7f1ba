package auth

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// SecretFile is the name of the JWT secret file in the data directory.
const SecretFile = "jwt.secret"

const secretLen = 32

// LoadOrCreateSecret returns the JWT secret kept in dataDir/jwt.secret
// (hex-encoded, mode 0600), creating the directory and a random 32-byte
// secret on first use. Concurrent first calls agree on one secret: the file
// is written under a temporary name and linked into place, never seen half
// written.
func LoadOrCreateSecret(dataDir string) ([]byte, error) {
	if dataDir == "" {
		return nil, errors.New("auth: empty data directory")
	}
	path := filepath.Join(dataDir, SecretFile)
	if s, err := readSecret(path); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return s, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("auth: create data directory: %w", err)
	}
	secret := make([]byte, secretLen)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("auth: random secret: %w", err)
	}
	tmp, err := os.CreateTemp(dataDir, SecretFile+".tmp*")
	if err != nil {
		return nil, fmt.Errorf("auth: create secret: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("auth: chmod secret: %w", err)
	}
	_, err = tmp.WriteString(hex.EncodeToString(secret) + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("auth: write secret: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return readSecret(path) // another process won the race
		}
		return nil, fmt.Errorf("auth: install secret: %w", err)
	}
	if d, err := os.Open(dataDir); err == nil {
		_ = d.Sync() // make the new name durable; best effort
		d.Close()
	}
	return secret, nil
}

func readSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("auth: read secret: %w", err)
	}
	s, err := hex.DecodeString(string(bytes.TrimSpace(b)))
	if err != nil {
		return nil, fmt.Errorf("auth: secret file %s is not hex: %w", path, err)
	}
	if len(s) < MinSecretLen {
		return nil, fmt.Errorf("auth: secret in %s is %d bytes, need at least %d", path, len(s), MinSecretLen)
	}
	return s, nil
}
