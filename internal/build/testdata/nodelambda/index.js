// A Node Lambda handler as AWS runs it, unchanged: API Gateway HTTP API
// (v2) events in, proxy responses out; any other event is echoed, and an
// event {"fail": "..."} is an error. testdata/golambda does the same in Go.
exports.handler = async (event, context) => {
  if (event && event.exit) process.exit(3);
  if (event && event.fail) throw new Error(event.fail);
  if (event && event.version === "2.0") {
    const http = event.requestContext.http;
    return {
      statusCode: 201,
      headers: { "Content-Type": "text/plain", "X-Request-Id": context.awsRequestId },
      body: `${http.method} ${event.rawPath}?${event.rawQueryString} body=${JSON.stringify(event.body || "")}` +
        ` name=${process.env.AWS_LAMBDA_FUNCTION_NAME} deadline=${context.getRemainingTimeInMillis() > 0}` +
        ` arn=${context.invokedFunctionArn}`,
    };
  }
  return { echo: event, requestId: context.awsRequestId };
};

// The callback style of Lambda's older Node handlers (_HANDLER=index.callback).
exports.callback = (event, context, callback) => {
  setImmediate(() => {
    if (event && event.fail) callback(new Error(event.fail));
    else callback(null, { called: context.functionName, remaining: context.getRemainingTimeInMillis() > 0 });
  });
};
