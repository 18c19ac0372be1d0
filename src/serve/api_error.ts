// Errors of the HTTP API, in OpenAI's shape: {"error": {"message", "type", "param", "code"}}.
// Every failure a client can cause is an ApiError with its status; anything else is a bug and
// becomes a 500 "server_error" (the server logs it and keeps serving).

export type ApiErrorType = "invalid_request_error" | "server_error";

export interface ApiErrorBody {
  error: { message: string; type: ApiErrorType; param: string | null; code: string | null };
}

export class ApiError extends Error {
  override name = "ApiError";
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  get type(): ApiErrorType {
    return this.status >= 500 ? "server_error" : "invalid_request_error";
  }

  body(): ApiErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** 400 for a request field: names the field (param) and says what was wrong with it. */
export function invalidField(param: string, message: string, code = "invalid_value"): ApiError {
  return new ApiError(400, message, param, code);
}

/** Any thrown value as an ApiError: ApiErrors pass through, everything else is a 500. */
export function asApiError(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new ApiError(500, `internal error: ${message}`, null, "internal_error");
}

export function errorResponse(error: ApiError): Response {
  return Response.json(error.body(), { status: error.status, headers: error.headers });
}
