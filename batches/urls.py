from django.urls import path

from batches import apis

urlpatterns = [
    path("batches", apis.BatchJobListApi.as_view(), name="api-batches"),
    path("batches/<int:pk>", apis.BatchJobDetailApi.as_view(), name="api-batch"),
    path("batches/<int:pk>/items", apis.BatchItemListApi.as_view(), name="api-batch-items"),
    path("batches/<int:pk>/cancel", apis.BatchJobCancelApi.as_view(), name="api-batch-cancel"),
]
