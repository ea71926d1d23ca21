// Command understudy is the failover registry: `understudy server` runs an
// etcd member with the registry API, `understudy agent` runs on every host,
// and the other commands let operators and scripts watch and inspect it.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// run executes one command line and returns the exit status: 0 on success,
// 2 for bad flags, arguments or configuration, 1 for anything else
// (a registry that refuses a request included).
func run(args []string, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "understudy:", err)
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}
