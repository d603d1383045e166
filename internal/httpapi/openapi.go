package httpapi

import _ "embed"

//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the OpenAPI 3 document of every route Pulse serves. A
// test in cmd/pulse holds it to the routes the router really has.
func OpenAPI() []byte { return openAPI }
