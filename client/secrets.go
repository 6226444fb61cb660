package client

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"

	v1 "berth.dev/berth/api/v1"
)

func envPath(env string) (string, error) {
	if env == "" {
		return "", v1.FieldError("metadata.environment", "must not be empty")
	}
	return "/api/v1/environments/" + url.PathEscape(env), nil
}

func jsonBody(v any) (*bytes.Reader, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, v1.Invalid("encode request: %v", err)
	}
	return bytes.NewReader(b), nil
}

// valuesPath is where secret or config name of env lives ("secrets" or
// "configs").
func valuesPath(plural, env, name string) (string, error) {
	p, err := envPath(env)
	if err != nil {
		return "", err
	}
	if name == "" {
		return "", v1.FieldError("metadata.name", "must not be empty")
	}
	return p + "/" + plural + "/" + url.PathEscape(name), nil
}

// SetSecret merges req into secret name of env (created if missing). The
// answer carries keys and sizes, never values.
func (c *Client) SetSecret(ctx context.Context, env, name string, req v1.SetValuesRequest) (result string, s *v1.Secret, err error) {
	s = new(v1.Secret)
	result, err = c.setValues(ctx, "secrets", env, name, req, s)
	return result, s, err
}

// SetConfig merges req into config name of env (created if missing).
func (c *Client) SetConfig(ctx context.Context, env, name string, req v1.SetValuesRequest) (result string, cfg *v1.Config, err error) {
	cfg = new(v1.Config)
	result, err = c.setValues(ctx, "configs", env, name, req, cfg)
	return result, cfg, err
}

func (c *Client) setValues(ctx context.Context, plural, env, name string, req v1.SetValuesRequest, into v1.Object) (string, error) {
	path, err := valuesPath(plural, env, name)
	if err != nil {
		return "", err
	}
	body, err := jsonBody(req)
	if err != nil {
		return "", err
	}
	var resp struct {
		Result string          `json:"result"`
		Object json.RawMessage `json:"object"`
	}
	if err := c.do(ctx, http.MethodPut, path, nil, "application/json", body, &resp); err != nil {
		return "", err
	}
	if err := json.Unmarshal(resp.Object, into); err != nil {
		return "", v1.Errorf(v1.ErrInternal, "decode answer: %v", err)
	}
	return resp.Result, nil
}

// Secrets lists the secrets of env (all environments when env is ""),
// keys and sizes only.
func (c *Client) Secrets(ctx context.Context, env string) ([]v1.Secret, error) {
	path := "/api/v1/secrets"
	if env != "" {
		p, err := envPath(env)
		if err != nil {
			return nil, err
		}
		path = p + "/secrets"
	}
	items, err := c.list(ctx, path, nil)
	if err != nil {
		return nil, err
	}
	return decodeItems[v1.Secret](items)
}

// Configs lists the configs of env (all environments when env is "").
func (c *Client) Configs(ctx context.Context, env string) ([]v1.Config, error) {
	path := "/api/v1/configs"
	if env != "" {
		p, err := envPath(env)
		if err != nil {
			return nil, err
		}
		path = p + "/configs"
	}
	items, err := c.list(ctx, path, nil)
	if err != nil {
		return nil, err
	}
	return decodeItems[v1.Config](items)
}

// DeleteSecret removes a secret.
func (c *Client) DeleteSecret(ctx context.Context, env, name string) error {
	path, err := valuesPath("secrets", env, name)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, path, nil, "", nil, nil)
}

// DeleteConfig removes a config.
func (c *Client) DeleteConfig(ctx context.Context, env, name string) error {
	path, err := valuesPath("configs", env, name)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, path, nil, "", nil, nil)
}

// DeleteEnvironment deletes an environment; with cascade, everything in
// it first (workloads, topics, secrets, configs, stacks). Without, the
// server refuses while anything is in it.
func (c *Client) DeleteEnvironment(ctx context.Context, name string, cascade bool) error {
	path, err := objectPath(v1.KindEnvironment, "", name)
	if err != nil {
		return err
	}
	var q url.Values
	if cascade {
		q = url.Values{"cascade": {"true"}}
	}
	return c.do(ctx, http.MethodDelete, path, q, "", nil, nil)
}

// CreateToken makes a token; its Secret is in the answer and nowhere else.
func (c *Client) CreateToken(ctx context.Context, req v1.TokenRequest) (*v1.Token, error) {
	body, err := jsonBody(req)
	if err != nil {
		return nil, err
	}
	var t v1.Token
	return &t, c.do(ctx, http.MethodPost, "/api/v1/tokens", nil, "application/json", body, &t)
}

// Tokens lists the tokens (never their secrets).
func (c *Client) Tokens(ctx context.Context) ([]v1.Token, error) {
	items, err := c.list(ctx, "/api/v1/tokens", nil)
	if err != nil {
		return nil, err
	}
	return decodeItems[v1.Token](items)
}

// RevokeToken deletes a token: it stops working at once.
func (c *Client) RevokeToken(ctx context.Context, name string) error {
	if name == "" {
		return v1.FieldError("metadata.name", "must not be empty")
	}
	return c.do(ctx, http.MethodDelete, "/api/v1/tokens/"+url.PathEscape(name), nil, "", nil, nil)
}

func stackPath(env, name string) (string, error) {
	return valuesPath("stacks", env, name)
}

// DeployStack applies rendered manifests as one unit and records a stack
// revision (or, with req.DryRun, answers what would change).
func (c *Client) DeployStack(ctx context.Context, env, name string, req v1.StackDeployRequest) (*v1.StackDeployResponse, error) {
	path, err := stackPath(env, name)
	if err != nil {
		return nil, err
	}
	body, err := jsonBody(req)
	if err != nil {
		return nil, err
	}
	var resp v1.StackDeployResponse
	return &resp, c.do(ctx, http.MethodPost, path, nil, "application/json", body, &resp)
}

// Stack returns a stack with its history.
func (c *Client) Stack(ctx context.Context, env, name string) (*v1.Stack, error) {
	path, err := stackPath(env, name)
	if err != nil {
		return nil, err
	}
	var st v1.Stack
	return &st, c.do(ctx, http.MethodGet, path, nil, "", nil, &st)
}

// RollbackStack deploys an earlier revision again (0: the one before the
// current), with the images it ran.
func (c *Client) RollbackStack(ctx context.Context, env, name string, revision int64) (*v1.StackDeployResponse, error) {
	path, err := stackPath(env, name)
	if err != nil {
		return nil, err
	}
	body, err := jsonBody(v1.StackRollbackRequest{Revision: revision})
	if err != nil {
		return nil, err
	}
	var resp v1.StackDeployResponse
	return &resp, c.do(ctx, http.MethodPost, path+"/rollback", nil, "application/json", body, &resp)
}
