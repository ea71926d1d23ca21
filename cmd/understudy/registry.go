package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
)

// registryFlag adds --registry, the registry servers to try in order.
func registryFlag(cmd *cobra.Command, addrs *[]string) {
	def := []string{"127.0.0.1:7420"}
	if env := os.Getenv("UNDERSTUDY_REGISTRY"); env != "" {
		def = strings.Split(env, ",")
	}
	cmd.Flags().StringSliceVar(addrs, "registry", def, "registry gRPC addresses, tried in turn (env UNDERSTUDY_REGISTRY)")
}

func dial(addr string) (*grpc.ClientConn, pb.RegistryServiceClient, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, usage("--registry %q: %v", addr, err)
	}
	return conn, pb.NewRegistryServiceClient(conn), nil
}

// firstAnswer calls fn on each registry in turn until one answers. A
// refusal (the request does not fit the registry's state: unknown service,
// failed precondition) is an answer every registry would give, so it ends
// the search and is returned as the server's reason; a malformed request is
// a usage error.
func firstAnswer(ctx context.Context, addrs []string, fn func(context.Context, pb.RegistryServiceClient) error) error {
	var errs []error
	for _, addr := range addrs {
		conn, cli, err := dial(addr)
		if err != nil {
			return err
		}
		err = fn(ctx, cli)
		_ = conn.Close()
		if err == nil {
			return nil
		}
		switch status.Code(err) {
		case codes.InvalidArgument:
			return usageError{errors.New(status.Convert(err).Message())}
		case codes.FailedPrecondition, codes.NotFound, codes.AlreadyExists, codes.PermissionDenied, codes.OutOfRange:
			return errors.New(status.Convert(err).Message())
		}
		errs = append(errs, fmt.Errorf("%s: %s", addr, status.Convert(err).Message()))
	}
	return fmt.Errorf("no registry answered: %w", errors.Join(errs...))
}
