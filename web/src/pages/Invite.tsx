import { Link, useNavigate, useParams } from "react-router-dom";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api } from "../api/client";
import type { components } from "../api/schema";
import type { Organization } from "../api/types";
import { ErrorBox, Loading } from "../components/ui";
import { useWorkspace } from "../lib/workspace";

type Info = components["schemas"]["InvitationInfo"];

/** `/invite/:token`: the link an admin copies from Members. */
export function InvitePage() {
  const { token = "" } = useParams();
  const { session, setOrg } = useWorkspace();
  const qc = useQueryClient();
  const navigate = useNavigate();
  const path = `/invite/${encodeURIComponent(token)}`;
  const info = useQuery({ queryKey: ["invite", token], queryFn: () => api.get<Info>(`${path}/info`, { noScope: true }) });
  const accept = useMutation({
    mutationFn: () => api.post<Organization>(`${path}/accept`, {}, { noScope: true }),
    onSuccess: async (org) => {
      setOrg(org.id);
      await qc.invalidateQueries({ queryKey: ["orgs"] });
      navigate("/agents", { replace: true });
    },
  });
  const next = `?next=${encodeURIComponent(`/invite/${token}`)}`;
  return (
    <main id="main" className="auth">
      <div className="card auth-card">
        <div className="brand big">Corral</div>
        <h1>Invitation</h1>
        {info.isLoading && <Loading />}
        <ErrorBox error={info.error} />
        {info.data && (
          <>
            <p>
              {info.data.inviter_name} invited <strong>{info.data.email}</strong> to join <strong>{info.data.org_name}</strong> as{" "}
              {info.data.role}.
            </p>
            <ErrorBox error={accept.error} />
            {session?.user ? (
              <button type="button" className="btn btn-primary wide" onClick={() => accept.mutate()} disabled={accept.isPending}>
                Join {info.data.org_name}
              </button>
            ) : (
              <p className="center">
                <Link to={`/${info.data.is_new_user ? "sign-up" : "sign-in"}${next}`}>
                  {info.data.is_new_user ? "Create an account" : "Sign in"}
                </Link>{" "}
                to accept.
              </p>
            )}
          </>
        )}
      </div>
    </main>
  );
}
