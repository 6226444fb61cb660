package awsapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/awsapi"
	"berth.dev/berth/internal/sigv4"
	"berth.dev/berth/internal/store"
	"berth.dev/berth/internal/store/bolt"
)

// functions answers invocations as Berth's gateway does: echo echoes,
// crash fails as a handler that threw, late is cut by its timeout (the
// gateway's own error), and queued ones are kept.
type functions struct {
	mu     sync.Mutex
	queued []string
}

func (f *functions) Invoke(ctx context.Context, env, fn string, body []byte, header http.Header) (int, http.Header, []byte, error) {
	switch env + "/" + fn {
	case "default/echo":
		return 200, http.Header{"Content-Type": {"application/json"}}, body, nil
	case "other/echo":
		return 200, nil, []byte(`"from other"`), nil
	case "default/crash":
		return 500, nil, []byte(`{"errorType": "TypeError", "errorMessage": "x is undefined"}`), nil
	case "default/late":
		b, _ := json.Marshal(v1.Status{Error: v1.ErrorBody{Kind: v1.ErrGatewayTimeout, Message: "no answer within 3s"}})
		return 504, nil, b, nil
	}
	return 404, nil, []byte("not here"), nil
}

func (f *functions) Enqueue(ctx context.Context, env, fn string, body []byte, header http.Header, callbackURL string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queued = append(f.queued, env+"/"+fn+" "+string(body))
	return "inv-1", nil
}

// homed is an instance key: it acts in its own environment.
type homed struct {
	identity
	home string
}

func (h homed) Home() string { return h.home }

func newLambda(t *testing.T) (string, *functions) {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "berth.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	for _, env := range []string{"default", "other"} {
		e := &v1.Environment{TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindEnvironment}, Metadata: v1.ObjectMeta{Name: env}}
		if err := store.Create(ctx, st, e); err != nil {
			t.Fatal(err)
		}
	}
	for _, ref := range []string{"default/echo", "default/crash", "default/late", "other/echo"} {
		env, name, _ := strings.Cut(ref, "/")
		fn := &v1.Function{TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindFunction},
			Metadata: v1.ObjectMeta{Name: name, Environment: env},
			Spec:     v1.FunctionSpec{Template: v1.Template{Image: "registry.local/" + name + ":1", Resources: v1.Resources{Memory: "128Mi"}}, Timeout: "3s"}}
		if err := store.Create(ctx, st, fn); err != nil {
			t.Fatal(err)
		}
	}
	fns := &functions{}
	all := map[string]awsapi.Identity{
		"BKDEPLOYER": keys["BKDEPLOYER"].who,
		"BKVIEWER":   keys["BKVIEWER"].who,
		"BKBOTH":     identity{envs: []string{"default", "other"}, write: true},
		"BIOTHER":    homed{identity{envs: []string{"other"}, write: true}, "other"},
	}
	api := awsapi.New(awsapi.Config{Store: st, Invocations: fns,
		Keys: func(ctx context.Context, id string) (string, awsapi.Identity, error) {
			who, ok := all[id]
			if !ok {
				return "", nil, sigv4.ErrUnknownKey
			}
			return "secret-of-" + id, who, nil
		}})
	srv := httptest.NewServer(awsapi.Route(api, http.NotFoundHandler()))
	t.Cleanup(srv.Close)
	return srv.URL, fns
}

func lambdaClient(url, id string) *lambda.Client {
	return lambda.New(lambda.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(url), Retryer: aws.NopRetryer{},
		Credentials: credentials.NewStaticCredentialsProvider(id, "secret-of-"+id, ""),
	})
}

func TestLambdaInvokeThroughTheSDK(t *testing.T) {
	url, fns := newLambda(t)
	c := lambdaClient(url, "BKDEPLOYER")
	ctx := context.Background()

	out, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("echo"), Payload: []byte(`{"hello": "world"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if out.StatusCode != 200 || string(out.Payload) != `{"hello": "world"}` || out.FunctionError != nil || aws.ToString(out.ExecutedVersion) != "$LATEST" {
		t.Fatalf("Invoke = %d %s %v", out.StatusCode, out.Payload, out.FunctionError)
	}
	// The same function by ARN and by partial ARN.
	for _, name := range []string{"arn:aws:lambda:us-east-1:default:function:echo", "default:function:echo", "echo:$LATEST"} {
		if out, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(name), Payload: []byte(`1`)}); err != nil || string(out.Payload) != "1" {
			t.Errorf("Invoke %s = %v, %v", name, out, err)
		}
	}
	// A handler that threw: a 200 whose payload is the error.
	out, err = c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("crash")})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(out.FunctionError) != "Unhandled" || !strings.Contains(string(out.Payload), `"errorType": "TypeError"`) {
		t.Fatalf("a crash = %v %s", aws.ToString(out.FunctionError), out.Payload)
	}
	out, err = c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("late")})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(out.FunctionError) != "Unhandled" || !strings.Contains(string(out.Payload), "Sandbox.Timedout") {
		t.Fatalf("a timeout = %v %s", aws.ToString(out.FunctionError), out.Payload)
	}

	// Event: queued, 202.
	ev, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("echo"), InvocationType: types.InvocationTypeEvent, Payload: []byte(`{"n": 1}`)})
	if err != nil {
		t.Fatal(err)
	}
	if ev.StatusCode != 202 || len(fns.queued) != 1 || fns.queued[0] != `default/echo {"n": 1}` {
		t.Fatalf("Event = %d, queued %v", ev.StatusCode, fns.queued)
	}
	dry, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("echo"), InvocationType: types.InvocationTypeDryRun})
	if err != nil || dry.StatusCode != 204 {
		t.Fatalf("DryRun = %v, %v", dry, err)
	}

	// An instance key's plain names are its own environment's.
	out, err = lambdaClient(url, "BIOTHER").Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("echo")})
	if err != nil || string(out.Payload) != `"from other"` {
		t.Fatalf("an instance key's Invoke = %v, %v", out, err)
	}
}

func TestLambdaListAndGetFunctions(t *testing.T) {
	url, _ := newLambda(t)
	ctx := context.Background()
	list, err := lambdaClient(url, "BKBOTH").ListFunctions(ctx, &lambda.ListFunctionsInput{MaxItems: aws.Int32(3)})
	if err != nil {
		t.Fatal(err)
	}
	var arns []string
	for _, f := range list.Functions {
		arns = append(arns, aws.ToString(f.FunctionArn))
	}
	if strings.Join(arns, " ") != "arn:aws:lambda:us-east-1:default:function:crash arn:aws:lambda:us-east-1:default:function:echo arn:aws:lambda:us-east-1:default:function:late" || list.NextMarker == nil {
		t.Fatalf("ListFunctions = %v next %v", arns, list.NextMarker)
	}
	rest, err := lambdaClient(url, "BKBOTH").ListFunctions(ctx, &lambda.ListFunctionsInput{Marker: list.NextMarker})
	if err != nil || len(rest.Functions) != 1 || aws.ToString(rest.Functions[0].FunctionArn) != "arn:aws:lambda:us-east-1:other:function:echo" {
		t.Fatalf("the next page = %v, %v", rest, err)
	}
	c := lambdaClient(url, "BKVIEWER")
	got, err := c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("echo")})
	if err != nil {
		t.Fatal(err)
	}
	cfg := got.Configuration
	if aws.ToString(cfg.FunctionName) != "echo" || aws.ToInt32(cfg.MemorySize) != 128 || aws.ToInt32(cfg.Timeout) != 3 ||
		cfg.PackageType != types.PackageTypeImage || aws.ToString(got.Code.ImageUri) != "registry.local/echo:1" {
		t.Fatalf("GetFunction = %+v %+v", cfg, got.Code)
	}
}

func TestLambdaErrorsAreTheOnesTheSDKKnows(t *testing.T) {
	url, _ := newLambda(t)
	ctx := context.Background()
	c := lambdaClient(url, "BKDEPLOYER")
	_, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("nope")})
	var notFound *types.ResourceNotFoundException
	if !errors.As(err, &notFound) {
		t.Errorf("an unknown function: %v, want ResourceNotFoundException", err)
	}
	if _, err := c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("other:function:echo")}); apiCode(err) != "AccessDeniedException" {
		t.Errorf("another environment's function: %v, want AccessDeniedException", err)
	}
	if _, err := lambdaClient(url, "BKVIEWER").Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("echo")}); apiCode(err) != "AccessDeniedException" {
		t.Errorf("a viewer's Invoke: %v, want AccessDeniedException", err)
	}
	_, err = c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("echo"), Payload: []byte("{not json")})
	var badBody *types.InvalidRequestContentException
	if !errors.As(err, &badBody) {
		t.Errorf("a payload not JSON: %v, want InvalidRequestContentException", err)
	}
	_, err = c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("echo"), Payload: []byte(`"` + strings.Repeat("x", 2<<20) + `"`)})
	var tooLarge *types.RequestTooLargeException
	if !errors.As(err, &tooLarge) {
		t.Errorf("a payload over the limit: %v, want RequestTooLargeException", err)
	}
	if _, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("echo"), Qualifier: aws.String("3")}); !errors.As(err, &notFound) {
		t.Errorf("a version: %v, want ResourceNotFoundException", err)
	}
	bad := lambda.New(lambda.Options{Region: "us-east-1", BaseEndpoint: aws.String(url), Retryer: aws.NopRetryer{},
		Credentials: credentials.NewStaticCredentialsProvider("BKDEPLOYER", "not-the-secret", "")})
	if _, err := bad.ListFunctions(ctx, &lambda.ListFunctionsInput{}); apiCode(err) != "InvalidSignatureException" {
		t.Errorf("a wrong secret: %v, want InvalidSignatureException", err)
	}
	if _, err := lambdaClient(url, "BKNOBODY").ListFunctions(ctx, &lambda.ListFunctionsInput{}); apiCode(err) != "UnrecognizedClientException" {
		t.Errorf("an unknown key: %v, want UnrecognizedClientException", err)
	}
	if _, err := c.ListAliases(ctx, &lambda.ListAliasesInput{FunctionName: aws.String("echo")}); apiCode(err) != "UnknownOperationException" {
		t.Errorf("an operation Berth lacks: %v, want UnknownOperationException", err)
	}
}
