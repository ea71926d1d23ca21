// Package demoservice is a TCP service for demos and tests whose health can
// be switched off and on: Fail closes its listening socket, so a real tcp
// check fails; Heal listens again on the same address.
package demoservice

import (
	"errors"
	"net"
	"sync"
)

// Service answers TCP connections on a fixed address with a short greeting.
type Service struct {
	name string

	mu     sync.Mutex
	addr   string
	ln     net.Listener
	wg     sync.WaitGroup
	closed bool
}

// Start listens on addr ("127.0.0.1:0" picks a free port).
func Start(name, addr string) (*Service, error) {
	s := &Service{name: name, addr: addr}
	if err := s.listen(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Service) listen() error {
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return err
	}
	s.addr = ln.Addr().String() // keep the port across Fail/Heal
	s.ln = ln
	s.wg.Go(func() { serve(ln, s.name) })
	return nil
}

func serve(ln net.Listener, name string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_, _ = c.Write([]byte(name + " ok\n"))
		_ = c.Close()
	}
}

// Addr is host:port the service listens on.
func (s *Service) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Healthy reports whether the service is listening.
func (s *Service) Healthy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ln != nil
}

// Fail stops listening; connections are refused until Heal.
func (s *Service) Fail() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		_ = s.ln.Close()
		s.ln = nil
	}
}

// Heal listens again on the same address.
func (s *Service) Heal() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("service closed")
	}
	if s.ln != nil {
		return nil
	}
	return s.listen()
}

// Close stops the service for good and waits for its goroutine.
func (s *Service) Close() {
	s.mu.Lock()
	s.closed = true
	if s.ln != nil {
		_ = s.ln.Close()
		s.ln = nil
	}
	s.mu.Unlock()
	s.wg.Wait()
}
