import type { Hono } from "hono";

export interface AuthContext {
  organizationId: string;
  apiKeyId: string;
  scopes: string[];
}

/** Hono generics shared by every route and middleware of the edge Worker. */
export interface AppEnv {
  Bindings: Env;
  Variables: {
    requestId: string;
    auth: AuthContext;
  };
}

export type App = Hono<AppEnv>;
