// Package auth holds GoIM's credentials primitives: argon2id password hashes
// (PasswordHasher), HS256 JSON Web Tokens that authenticate apps and
// connections (Issuer), and the persisted random JWT secret of a one-process
// deployment (LoadOrCreateSecret).
package auth
