// Package e2e is the end-to-end test of the benchmark suite: it starts the
// one-process server in the test process (internal/standalone), seeds users
// in its SQLite store, and runs the conns and room scenarios through the
// library API with in-process workers. It has no code of its own; it lives
// apart from package suite so that the suite's unit tests do not depend on
// the whole server.
package e2e
