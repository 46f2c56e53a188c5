/**
 * Model ids are `provider/model`, as in the Workflow API's attributes. A provider with a key in
 * the environment is called for real; without one, the call goes to the local OpenAI-compatible
 * server (host/local-llm), so development and tests never need a paid key.
 */
import { createAnthropic } from "@ai-sdk/anthropic";
import { createOpenAI } from "@ai-sdk/openai";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import type { LanguageModel } from "ai";

export interface LlmConfig {
  openaiApiKey?: string;
  openaiBaseUrl?: string;
  anthropicApiKey?: string;
  /** Any OpenAI-compatible endpoint, used for model ids `compatible/<model>`. */
  compatibleBaseUrl?: string;
  compatibleApiKey?: string;
  /** The local stand-in (host/local-llm), for `local/<model>` and providers without a key. */
  localBaseUrl: string;
}

export function llmConfigFromEnv(env: NodeJS.ProcessEnv): LlmConfig {
  return {
    openaiApiKey: env.OPENAI_API_KEY || undefined,
    openaiBaseUrl: env.OPENAI_BASE_URL || undefined,
    anthropicApiKey: env.ANTHROPIC_API_KEY || undefined,
    compatibleBaseUrl: env.OPENAI_COMPATIBLE_BASE_URL || undefined,
    compatibleApiKey: env.OPENAI_COMPATIBLE_API_KEY || undefined,
    localBaseUrl: env.LOCAL_LLM_URL || `http://127.0.0.1:${env.LOCAL_LLM_PORT ?? 8790}/v1`,
  };
}

export class UnknownModelError extends Error {}

export interface ResolvedModel {
  model: LanguageModel;
  servedBy: string;
  /** Provider tools the call needs (Anthropic's web search). */
  tools?: Record<string, unknown>;
}

/**
 * Chat Completions' web search is the request field `web_search_options` (OpenAI's search models,
 * and the local server); the AI SDK's OpenAI chat model has no setting for it, so it is added to
 * the request body here. That model also reads the answer's `url_citation` annotations as sources.
 */
function withWebSearchOptions(): typeof fetch {
  return async (input, init) => {
    if (typeof init?.body === "string") {
      const body = JSON.parse(init.body) as Record<string, unknown>;
      body.web_search_options = {};
      init = { ...init, body: JSON.stringify(body) };
    }
    return fetch(input, init);
  };
}

export function resolveModel(modelId: string, config: LlmConfig, options: { webSearch?: boolean } = {}): ResolvedModel {
  const slash = modelId.indexOf("/");
  if (slash <= 0 || slash === modelId.length - 1) throw new UnknownModelError(`model id "${modelId}" must look like provider/model`);
  const provider = modelId.slice(0, slash);
  const name = modelId.slice(slash + 1);
  if (options.webSearch) return resolveSearchModel(provider, name, modelId, config);
  const local = () => createOpenAICompatible({ name: "local", baseURL: config.localBaseUrl, includeUsage: true })(modelId);
  switch (provider) {
    case "openai":
      return config.openaiApiKey
        ? { model: createOpenAI({ apiKey: config.openaiApiKey, baseURL: config.openaiBaseUrl }).chat(name), servedBy: "openai" }
        : { model: local(), servedBy: "local" };
    case "anthropic":
      return config.anthropicApiKey
        ? { model: createAnthropic({ apiKey: config.anthropicApiKey })(name), servedBy: "anthropic" }
        : { model: local(), servedBy: "local" };
    case "compatible":
      if (!config.compatibleBaseUrl) throw new UnknownModelError("compatible/* models need OPENAI_COMPATIBLE_BASE_URL");
      return {
        model: createOpenAICompatible({
          name: "compatible",
          baseURL: config.compatibleBaseUrl,
          apiKey: config.compatibleApiKey,
          includeUsage: true,
        })(name),
        servedBy: "compatible",
      };
    case "local":
      return { model: local(), servedBy: "local" };
    default:
      throw new UnknownModelError(`unknown provider "${provider}" in model id "${modelId}" (openai, anthropic, compatible, local)`);
  }
}

/** A model that searches the web and reports the sources it used. */
function resolveSearchModel(provider: string, name: string, modelId: string, config: LlmConfig): ResolvedModel {
  const searchingChat = (baseURL: string | undefined, apiKey: string | undefined, model: string, servedBy: string) => ({
    model: createOpenAI({ baseURL, apiKey: apiKey ?? "local-no-key", fetch: withWebSearchOptions() }).chat(model),
    servedBy,
  });
  switch (provider) {
    case "openai":
      return config.openaiApiKey
        ? searchingChat(config.openaiBaseUrl, config.openaiApiKey, name, "openai")
        : searchingChat(config.localBaseUrl, undefined, modelId, "local");
    case "anthropic":
      if (!config.anthropicApiKey) return searchingChat(config.localBaseUrl, undefined, modelId, "local");
      {
        const anthropic = createAnthropic({ apiKey: config.anthropicApiKey });
        return { model: anthropic(name), servedBy: "anthropic", tools: { web_search: anthropic.tools.webSearch_20250305({ maxUses: 5 }) } };
      }
    case "compatible":
      if (!config.compatibleBaseUrl) throw new UnknownModelError("compatible/* models need OPENAI_COMPATIBLE_BASE_URL");
      return searchingChat(config.compatibleBaseUrl, config.compatibleApiKey, name, "compatible");
    case "local":
      return searchingChat(config.localBaseUrl, undefined, modelId, "local");
    default:
      throw new UnknownModelError(`unknown provider "${provider}" in model id "${modelId}" (openai, anthropic, compatible, local)`);
  }
}
