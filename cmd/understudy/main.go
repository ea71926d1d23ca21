// Command understudy is the failover registry: `understudy server` runs an
// etcd member with the registry API, `understudy agent` runs on every host,
// and the other commands let operators and scripts watch and inspect it.
package main

import (
	"errors"
	"fmt"
	"os"
)

func main() {
	err := newRootCmd().Execute()
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "understudy:", err)
	var ue usageError
	if errors.As(err, &ue) {
		os.Exit(2)
	}
	os.Exit(1)
}
