// A Lambda handler as AWS runs it, unchanged: API Gateway HTTP API (v2)
// events in, proxy responses out; any other event is echoed, and an
// event {"fail": "..."} is an error.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

func handle(ctx context.Context, raw json.RawMessage) (any, error) {
	lc, _ := lambdacontext.FromContext(ctx)
	var probe struct {
		Version string `json:"version"`
		Fail    string `json:"fail"`
		Exit    bool   `json:"exit"`
	}
	json.Unmarshal(raw, &probe)
	if probe.Exit {
		os.Exit(3)
	}
	if probe.Fail != "" {
		return nil, errors.New(probe.Fail)
	}
	if probe.Version == "2.0" {
		var ev events.APIGatewayV2HTTPRequest
		if err := json.Unmarshal(raw, &ev); err != nil {
			return nil, err
		}
		dl, _ := ctx.Deadline()
		return events.APIGatewayV2HTTPResponse{
			StatusCode: 201,
			Headers:    map[string]string{"Content-Type": "text/plain", "X-Request-Id": lc.AwsRequestID},
			Body: fmt.Sprintf("%s %s?%s body=%q name=%s deadline=%t arn=%s",
				ev.RequestContext.HTTP.Method, ev.RawPath, ev.RawQueryString, ev.Body,
				os.Getenv("AWS_LAMBDA_FUNCTION_NAME"), !dl.IsZero(), lc.InvokedFunctionArn),
		}, nil
	}
	return map[string]any{"echo": raw, "requestId": lc.AwsRequestID}, nil
}

func main() { lambda.Start(handle) }
