package servertest

import (
	"testing"

	"go.uber.org/goleak"
)

// VerifyNoLeaks runs the tests and fails if goroutines outlive them, except
// those etcd itself leaves behind after its members close: keep-alive peer
// connections of its raft HTTP transport, which close on their own.
func VerifyNoLeaks(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("github.com/soheilhy/cmux.(*MuxConn).Read"),
		goleak.IgnoreAnyFunction("github.com/soheilhy/cmux.(*cMux).serve"),
		goleak.IgnoreAnyFunction("net/http.(*connReader).abortPendingRead"),
	)
}
