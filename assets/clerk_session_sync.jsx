// Hands Clerk's short-lived session token to the server whenever it changes, and
// before it expires, so every event is verified with a current token.
import { useAuth } from "@clerk/clerk-react";
import { useEffect } from "react";

const REFRESH_MS = 45000;

export function ClerkSessionSync({ onToken }) {
  const { isLoaded, isSignedIn, getToken } = useAuth();
  useEffect(() => {
    if (!isLoaded) return undefined;
    let stopped = false;
    const push = async () => {
      const token = isSignedIn ? await getToken() : "";
      if (!stopped) onToken(token || "");
    };
    push();
    const timer = setInterval(push, REFRESH_MS);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }, [isLoaded, isSignedIn]);
  return null;
}
