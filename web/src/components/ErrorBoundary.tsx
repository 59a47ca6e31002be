import { Component, type ErrorInfo, type ReactNode } from "react";

/** Shows a crash as a message (with a way back) instead of a blank page. */
export class ErrorBoundary extends Component<{ children: ReactNode }, { error: Error | null }> {
  state = { error: null as Error | null };

  static getDerivedStateFromError(error: Error) {
    return { error };
  }

  componentDidCatch(error: Error, info: ErrorInfo) {
    console.error("dashboard crashed", error, info.componentStack);
  }

  render() {
    if (!this.state.error) return this.props.children;
    return (
      <main id="main" className="auth">
        <div className="card auth-card" role="alert">
          <h1>Something went wrong</h1>
          <p className="mono small">{this.state.error.message}</p>
          <button type="button" className="btn btn-primary" onClick={() => (window.location.href = "/")}>
            Back to the dashboard
          </button>
        </div>
      </main>
    );
  }
}
