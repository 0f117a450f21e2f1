from django.urls import path

from routing import apis

urlpatterns = [
    path("me", apis.MeApi.as_view(), name="api-me"),
    path("models", apis.ModelListApi.as_view(), name="api-models"),
    path("workloads", apis.WorkloadListApi.as_view(), name="api-workloads"),
    path("workloads/<slug:slug>", apis.WorkloadDetailApi.as_view(), name="api-workload"),
    path("requests", apis.requests_endpoint, name="api-requests"),
    path("embeddings", apis.native_embeddings, name="api-embeddings"),
    path("requests/<uuid:id>", apis.RequestDetailApi.as_view(), name="api-request"),
    path("requests/<uuid:id>/cancel", apis.RequestCancelApi.as_view(), name="api-request-cancel"),
]
