/**
 * Activities (steps) of the example workflows. Every side effect of a workflow lives in an activity,
 * so Temporal can retry it and record it as a step in history.
 */
import { Context } from "@temporalio/activity";
import { activityEnv } from "./runtime.ts";

/** The greeting word comes from GREETING when the run (or the host) sets it. */
export async function composeGreeting(name: string): Promise<string> {
  return `${activityEnv("GREETING") ?? "Hello"}, ${name}!`;
}

export async function countWords(text: string): Promise<{ text: string; words: number }> {
  const words = text.trim().split(/\s+/).filter(Boolean).length;
  return { text, words };
}

export async function shout(text: string): Promise<string> {
  return text.toUpperCase();
}

export async function prepareDoomedWork(reason: string): Promise<{ prepared: true; reason: string }> {
  return { prepared: true, reason };
}

export async function recordApproval(
  request: string,
  approvedBy: string,
  priority: number,
): Promise<{ request: string; approvedBy: string; priority: number }> {
  return { request, approvedBy, priority };
}

/** Runs when an approval is stopped: releases whatever the request held. */
export async function cleanupApproval(request: string): Promise<{ released: string }> {
  return { released: request };
}

/** Fails until its attempt number passes `failures`; Temporal retries it (1 s apart). */
export async function unreliableStep(failures: number): Promise<{ attempts: number }> {
  const { attempt } = Context.current().info;
  if (attempt <= failures) throw new Error(`attempt ${attempt} failed on purpose (flaky_step fails ${failures} time(s))`);
  return { attempts: attempt };
}
