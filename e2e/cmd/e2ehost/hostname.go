package main

import "os"

// hostname is the container's host name: the default for --host.
func hostname() string {
	h, _ := os.Hostname()
	return h
}
