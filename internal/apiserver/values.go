package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"

	v1 "berth.dev/berth/api/v1"
)

// Values keeps the Secrets and Configs of environments; internal/secrets
// implements it. Secret answers are redacted by it (keys and sizes only):
// no handler here ever holds a secret value but on its way in.
type Values interface {
	SetSecret(ctx context.Context, env, name string, req v1.SetValuesRequest) (*v1.Secret, bool, error)
	GetSecret(ctx context.Context, env, name string) (*v1.Secret, error)
	ListSecrets(ctx context.Context, env string) ([]*v1.Secret, error)
	DeleteSecret(ctx context.Context, env, name string) (*v1.Secret, error)
	SetConfig(ctx context.Context, env, name string, req v1.SetValuesRequest) (*v1.Config, bool, error)
	GetConfig(ctx context.Context, env, name string) (*v1.Config, error)
	ListConfigs(ctx context.Context, env string) ([]*v1.Config, error)
	DeleteConfig(ctx context.Context, env, name string) (*v1.Config, error)
}

func (s *Server) valueStore() (Values, error) {
	if s.values == nil {
		return nil, v1.Unavailable("this server keeps no secrets or config values")
	}
	return s.values, nil
}

// decodeJSON reads a request body strictly: an unknown field is a mistake
// the caller should hear about.
func decodeJSON(body []byte, into any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		return v1.Invalid("request body: %v", err)
	}
	return nil
}

func (s *Server) valueRoutes(api func(string, methods)) {
	api("/api/v1/environments/{env}/secrets", methods{http.MethodGet: listValues(s, Values.ListSecrets)})
	api("/api/v1/environments/{env}/secrets/{name}", methods{
		http.MethodGet:    oneValue(s, Values.GetSecret),
		http.MethodPut:    setValues(s, Values.SetSecret),
		http.MethodDelete: oneValue(s, Values.DeleteSecret),
	})
	api("/api/v1/environments/{env}/configs", methods{http.MethodGet: listValues(s, Values.ListConfigs)})
	api("/api/v1/environments/{env}/configs/{name}", methods{
		http.MethodGet:    oneValue(s, Values.GetConfig),
		http.MethodPut:    setValues(s, Values.SetConfig),
		http.MethodDelete: oneValue(s, Values.DeleteConfig),
	})
	api("/api/v1/secrets", methods{http.MethodGet: listValues(s, Values.ListSecrets)})
	api("/api/v1/configs", methods{http.MethodGet: listValues(s, Values.ListConfigs)})
	api("/api/v1/tokens", methods{http.MethodGet: s.listTokens, http.MethodPost: s.createToken})
	api("/api/v1/tokens/{name}", methods{http.MethodDelete: s.revokeToken})
	api("/api/v1/environments/{env}/stacks", methods{http.MethodGet: s.listStacks})
	api("/api/v1/environments/{env}/stacks/{name}", methods{
		http.MethodGet:    s.getStack,
		http.MethodPost:   s.deployStack,
		http.MethodDelete: s.deleteStack,
	})
	api("/api/v1/environments/{env}/stacks/{name}/rollback", methods{http.MethodPost: s.rollbackStack})
}

// The handlers below take the Values method to call (Values.GetSecret,
// Values.DeleteConfig, ...), so Secrets and Configs share one of each.

func setValues[T v1.Object](s *Server, set func(Values, context.Context, string, string, v1.SetValuesRequest) (T, bool, error)) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		ctx := r.Context()
		vs, err := s.valueStore()
		if err != nil {
			return err
		}
		env, name := r.PathValue("env"), r.PathValue("name")
		if err := s.requireEnvironment(ctx, env, false); err != nil {
			return err
		}
		body, err := s.readBody(w, r, s.maxBody)
		if err != nil {
			return err
		}
		var req v1.SetValuesRequest
		if err := decodeJSON(body, &req); err != nil {
			return err
		}
		out, created, err := set(vs, ctx, env, name, req)
		if err != nil {
			return err
		}
		status, result := http.StatusOK, ResultConfigured
		if created {
			status, result = http.StatusCreated, ResultCreated
		}
		writeJSON(w, status, ApplyResponse{Result: result, Object: out})
		return nil
	}
}

// oneValue answers a get or a delete of one Secret or Config.
func oneValue[T v1.Object](s *Server, op func(Values, context.Context, string, string) (T, error)) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		vs, err := s.valueStore()
		if err != nil {
			return err
		}
		out, err := op(vs, r.Context(), r.PathValue("env"), r.PathValue("name"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	}
}

func listValues[T v1.Object](s *Server, list func(Values, context.Context, string) ([]T, error)) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		vs, err := s.valueStore()
		if err != nil {
			return err
		}
		l, err := list(vs, r.Context(), r.PathValue("env"))
		if err != nil {
			return err
		}
		objs := make([]v1.Object, len(l))
		for i, o := range l {
			objs[i] = o
		}
		if objs, err = s.visible(r, objs); err != nil {
			return err
		}
		return writeList(w, objs)
	}
}
