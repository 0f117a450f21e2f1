from django.urls import path

from routing import apis

urlpatterns = [
    path("me", apis.MeApi.as_view(), name="api-me"),
    path("models", apis.ModelListApi.as_view(), name="api-models"),
    path("workloads", apis.WorkloadListApi.as_view(), name="api-workloads"),
    path("workloads/<slug:slug>", apis.WorkloadDetailApi.as_view(), name="api-workload"),
    path("requests", apis.RequestListApi.as_view(), name="api-requests"),
    path("requests/<uuid:id>", apis.RequestDetailApi.as_view(), name="api-request"),
]
