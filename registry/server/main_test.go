package server_test

import (
	"testing"

	"github.com/understudy-dev/understudy/registry/server/servertest"
)

func TestMain(m *testing.M) { servertest.VerifyNoLeaks(m) }
