package server

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/understudy-dev/understudy/registry"
)

var (
	// ErrNotReady means the hub has not read the keyspace from etcd yet.
	ErrNotReady = errors.New("registry has not loaded its state from etcd yet")
	// ErrStopped means the server is shutting down.
	ErrStopped = errors.New("registry server is stopping")
	// ErrSubscriptionClosed is returned by Next after Close or Stop.
	ErrSubscriptionClosed = errors.New("subscription closed")
	// ErrUnknownService means no instance of the service is registered.
	ErrUnknownService = errors.New("unknown service")
	// ErrInvalidArgument means a request field is out of range.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrRefused means an operator request does not fit the service's
	// current state (a switchover to an unhealthy host, while paused...).
	// The error says why.
	ErrRefused = errors.New("refused")
)

// toStatus maps errors to gRPC status codes in one place, at the API edge.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Internal
	switch {
	case errors.Is(err, registry.ErrInvalidName), errors.Is(err, ErrInvalidArgument):
		code = codes.InvalidArgument
	case errors.Is(err, ErrRefused):
		code = codes.FailedPrecondition
	case errors.Is(err, ErrUnknownService):
		code = codes.NotFound
	case errors.Is(err, ErrNotReady), errors.Is(err, ErrStopped), errors.Is(err, ErrSubscriptionClosed):
		code = codes.Unavailable
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	}
	return status.Error(code, err.Error())
}
