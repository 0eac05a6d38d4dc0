// The API reference: Swagger UI (vendored, see swagger/VERSION) on the
// service's own /openapi.json. Nothing is fetched from anywhere else:
// the validator badge (validator.swagger.io) is off, and so are the
// remote-config and query-string URL overrides.
"use strict";

window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  validatorUrl: null,
  configUrl: null,
  queryConfigEnabled: false,
  deepLinking: true,
  tryItOutEnabled: false,
  persistAuthorization: false,
  withCredentials: false,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
