package server

import (
	"context"
	"fmt"
	"net/http"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/apiserver"
	"berth.dev/berth/internal/awsapi"
	"berth.dev/berth/internal/sigv4"
)

// awsAPIs wraps next (the API server) with the AWS Step Functions and
// Lambda APIs, signed with the keys of tokens and instances (docs/aws.md).
// The gateway serves them too, at states.ENV.DOMAIN (and sync-states, the
// host StartSyncExecution goes to) and lambda.ENV.DOMAIN, where an
// environment's instances reach them (AWS_ENDPOINT_URL_SFN and
// AWS_ENDPOINT_URL_LAMBDA).
func (s *Server) awsAPIs(next http.Handler) http.Handler {
	api := awsapi.New(awsapi.Config{
		Store:       s.store,
		Executions:  s.workflows,
		Invocations: invocations{gatewayInvoker: s.invoker, q: s.queue},
		Keys: func(ctx context.Context, id string) (string, awsapi.Identity, error) {
			f, err := s.state.keys.Lookup(ctx, id)
			if err != nil {
				return "", nil, err
			}
			p, err := s.auth.KeyPrincipal(ctx, f)
			if v1.KindOf(err) == v1.ErrUnauthorized {
				return "", nil, fmt.Errorf("%w: %v", sigv4.ErrUnknownKey, err)
			}
			if err != nil {
				return "", nil, err
			}
			return f.Secret, homedPrincipal{p}, nil
		},
		Logger: s.log.With("part", "aws"),
	})
	onGateway := awsPlatform{awsapi.Route(api, http.NotFoundHandler())}
	for _, name := range []string{"states", "sync-states", "lambda"} {
		s.gateway.SetPlatform(name, onGateway)
	}
	return awsapi.Route(api, next)
}

// awsPlatform serves the AWS APIs on the gateway; the key's identity
// decides what each request may reach.
type awsPlatform struct{ h http.Handler }

func (p awsPlatform) ServePlatform(w http.ResponseWriter, r *http.Request, env, sub string) {
	p.h.ServeHTTP(w, r)
}

// homedPrincipal gives a key's plain Lambda function names an environment:
// an instance key's own, a token's when it has only one, else "default".
type homedPrincipal struct{ apiserver.Principal }

func (p homedPrincipal) Home() string {
	if len(p.Environments) == 1 && p.Environments[0] != v1.AllEnvironments {
		return p.Environments[0]
	}
	return ""
}
