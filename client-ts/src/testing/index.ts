export { FakeGateway, settle } from "./fake-gateway.js";
