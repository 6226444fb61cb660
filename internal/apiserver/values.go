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
	api("/api/v1/environments/{env}/secrets", methods{http.MethodGet: s.listValues(v1.KindSecret)})
	api("/api/v1/environments/{env}/secrets/{name}", methods{
		http.MethodGet:    s.getValues(v1.KindSecret),
		http.MethodPut:    s.setValues(v1.KindSecret),
		http.MethodDelete: s.deleteValues(v1.KindSecret),
	})
	api("/api/v1/environments/{env}/configs", methods{http.MethodGet: s.listValues(v1.KindConfig)})
	api("/api/v1/environments/{env}/configs/{name}", methods{
		http.MethodGet:    s.getValues(v1.KindConfig),
		http.MethodPut:    s.setValues(v1.KindConfig),
		http.MethodDelete: s.deleteValues(v1.KindConfig),
	})
	api("/api/v1/secrets", methods{http.MethodGet: s.listValues(v1.KindSecret)})
	api("/api/v1/configs", methods{http.MethodGet: s.listValues(v1.KindConfig)})
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

func (s *Server) setValues(kind string) handlerFunc {
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
		var out v1.Object
		var created bool
		if kind == v1.KindSecret {
			out, created, err = vs.SetSecret(ctx, env, name, req)
		} else {
			out, created, err = vs.SetConfig(ctx, env, name, req)
		}
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

func (s *Server) getValues(kind string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		vs, err := s.valueStore()
		if err != nil {
			return err
		}
		var out v1.Object
		if kind == v1.KindSecret {
			out, err = vs.GetSecret(r.Context(), r.PathValue("env"), r.PathValue("name"))
		} else {
			out, err = vs.GetConfig(r.Context(), r.PathValue("env"), r.PathValue("name"))
		}
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	}
}

func (s *Server) listValues(kind string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		vs, err := s.valueStore()
		if err != nil {
			return err
		}
		env := r.PathValue("env")
		var objs []v1.Object
		if kind == v1.KindSecret {
			l, err := vs.ListSecrets(r.Context(), env)
			if err != nil {
				return err
			}
			for _, o := range l {
				objs = append(objs, o)
			}
		} else {
			l, err := vs.ListConfigs(r.Context(), env)
			if err != nil {
				return err
			}
			for _, o := range l {
				objs = append(objs, o)
			}
		}
		if objs, err = s.visible(r, objs); err != nil {
			return err
		}
		return writeList(w, objs)
	}
}

func (s *Server) deleteValues(kind string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		vs, err := s.valueStore()
		if err != nil {
			return err
		}
		var out v1.Object
		if kind == v1.KindSecret {
			out, err = vs.DeleteSecret(r.Context(), r.PathValue("env"), r.PathValue("name"))
		} else {
			out, err = vs.DeleteConfig(r.Context(), r.PathValue("env"), r.PathValue("name"))
		}
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	}
}
