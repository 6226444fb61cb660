package awsapi

import "net/http"

// Invocations runs function invocations.
type Invocations interface{}

// LambdaPathPrefix starts the path of every Lambda API operation Berth
// serves.
const LambdaPathPrefix = "/2015-03-31/"

// Lambda serves the Lambda API (REST-JSON).
func (a *API) Lambda() http.Handler { return http.NotFoundHandler() }
